// Package oip holds the Open Inference Protocol v2 (KServe v2 / Triton) REST
// message types and the tensor decoding every server and engine shares.
//
// Tensor data arrives as JSON arrays, flat in row-major order or nested; Decode
// turns either into a typed Go slice and checks it against the declared shape
// and datatype, so engines only ever see well-formed tensors.
package oip
