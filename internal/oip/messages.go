package oip

import "encoding/json"

// InferRequest is the body of POST /v2/models/{m}/infer.
type InferRequest struct {
	ID         string          `json:"id,omitempty"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Inputs     []RequestInput  `json:"inputs"`
	Outputs    []RequestOutput `json:"outputs,omitempty"`
}

// RequestInput is one input tensor as sent; Data is decoded later by Decode
// once the datatype and shape are known to be valid.
type RequestInput struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data"`
}

// RequestOutput asks for one output by name.
type RequestOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

// InferResponse is the body of a successful infer call.
type InferResponse struct {
	ModelName    string         `json:"model_name"`
	ModelVersion string         `json:"model_version,omitempty"`
	ID           string         `json:"id,omitempty"`
	Parameters   map[string]any `json:"parameters,omitempty"`
	Outputs      []Tensor       `json:"outputs"`
}

// TensorMetadata describes one input or output; -1 in Shape is a dynamic
// dimension and an empty Shape a scalar. A nil Shape means the model
// declares none: tensors of any shape are accepted, and the protocol, which
// has no way to say "any rank", shows it as [-1].
type TensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// MarshalJSON writes a nil Shape as [-1] and an empty one as [].
func (t TensorMetadata) MarshalJSON() ([]byte, error) {
	type plain TensorMetadata
	p := plain(t)
	if p.Shape == nil {
		p.Shape = AnyShape()
	}
	return json.Marshal(p)
}

// AnyShape is the shape the protocol shows for a tensor declared without
// one: [-1].
func AnyShape() []int64 { return []int64{-1} }

// ModelMetadata is the body of GET /v2/models/{m}.
type ModelMetadata struct {
	Name     string           `json:"name"`
	Versions []string         `json:"versions,omitempty"`
	Platform string           `json:"platform"`
	Inputs   []TensorMetadata `json:"inputs"`
	Outputs  []TensorMetadata `json:"outputs"`
}

// ModelReady is the body of GET /v2/models/{m}/ready.
type ModelReady struct {
	Name  string `json:"name"`
	Ready bool   `json:"ready"`
}

// ServerMetadata is the body of GET /v2.
type ServerMetadata struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Extensions []string `json:"extensions"`
}

// ErrorResponse is the protocol's error body.
type ErrorResponse struct {
	Error string `json:"error"`
}
