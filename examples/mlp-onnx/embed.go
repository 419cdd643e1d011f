// Package mlponnx is the ONNX example model: a small PyTorch MLP trained by
// export.py on scikit-learn's digits dataset (8x8 images as 64 pixel
// intensities 0..16, predicting the digit) and exported to ONNX with a
// dynamic batch dimension, for the onnx engine.
package mlponnx

import _ "embed"

// Model is model.onnx. Input "input" is FP32 [-1, 64]; outputs "logits" and
// "probabilities" are FP32 [-1, 10].
//
//go:embed model.onnx
var Model []byte

// Request is request.json: an OIP v2 infer request body with two rows.
//
//go:embed request.json
var Request []byte
