//go:build cgo

package replicacmd

// cgoBuild reports that this build has cgo, and so engine onnx.
const cgoBuild = true
