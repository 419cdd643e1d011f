// Package oip holds the Open Inference Protocol v2 (KServe v2 / Triton) REST
// message types and the tensor codecs every server and engine shares.
//
// Every datatype of the protocol is served: BOOL, INT8 to INT64, UINT8 to
// UINT64, FP16, BF16, FP32, FP64 and BYTES. datatype.go holds the one table
// that maps each to the Go type of Tensor.Data and to its raw element size;
// Float16 and BFloat16 carry half-precision bits.
//
// Tensor data arrives as JSON arrays, flat in row-major order or nested;
// Decode turns either into a typed Go slice and checks it against the
// declared shape and datatype, so engines only ever see well-formed
// tensors. It also arrives in raw form (the binary tensor data extension,
// gRPC raw contents, Python worker channels), which FromRaw reads and
// RawBytes and AppendRaw write. Both decoders allocate in proportion to the
// bytes received, never to what a shape declares.
//
// JSON has no literal for NaN and the infinities. Responses carry them as
// Triton does, as the bare tokens NaN, Infinity and -Infinity; requests may
// send those tokens, the same names as strings, or null for NaN (see
// AppendResponse and ParseRequest).
package oip
