//go:build !cgo

package replicacmd

// cgoBuild reports that this build has cgo, and so engine onnx: not this
// one. ebb-replica is built without cgo on purpose (an externally linked
// binary keeps several MiB more resident); it hands onnx replicas to ebb,
// which has cgo (see Delegate).
const cgoBuild = false
