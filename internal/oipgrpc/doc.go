// Package oipgrpc is the Open Inference Protocol v2 over gRPC: the
// GRPCInferenceService (package inference) of KServe and Triton, generated
// from grpc_predict_v2.proto by hack/gen-proto.sh, and the conversion
// between its tensor messages and oip.Tensor.
//
// Every datatype of the protocol is converted. Tensor data travels either
// in the typed fields of InferTensorContents (fp32_contents and the like;
// INT8 and INT16 widened to int_contents, UINT8 and UINT16 to
// uint_contents) or as raw bytes (raw_input_contents, raw_output_contents)
// in oip's raw form: little-endian, row-major, one byte per BOOL and each
// BYTES element prefixed with its 4-byte little-endian length. FP16 and BF16
// have no typed field and always travel raw. The decoding functions accept
// both and check the element count against the shape; the encoding
// functions write either.
package oipgrpc
