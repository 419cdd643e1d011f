// Package oipgrpc is the Open Inference Protocol v2 over gRPC: the
// GRPCInferenceService (package inference) of KServe and Triton, generated
// from grpc_predict_v2.proto by hack/gen-proto.sh, and the conversion
// between its tensor messages and oip.Tensor.
//
// Tensor data travels either in the typed fields of InferTensorContents
// (fp32_contents and the like) or as raw bytes (raw_input_contents,
// raw_output_contents): little-endian, row-major, one byte per BOOL and each
// BYTES element prefixed with its 4-byte little-endian length. The decoding
// functions accept both and check the element count against the shape; the
// encoding functions write either.
package oipgrpc
