//go:build cgo

package main

// cgoBuild reports that this ebb was built with cgo, which engine onnx
// needs.
const cgoBuild = true
