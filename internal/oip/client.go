package oip

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// This file is the client's side of the REST messages: a request body from
// typed tensors, and typed tensors from a response body, in JSON or with
// binary tensor data.

// RequestBody returns the body of an infer request carrying inputs: in
// JSON, or, when binary is true, with each input's data as binary tensor
// data after the JSON. jsonLen is the length of the JSON part, to send in
// the Inference-Header-Content-Length header when binary is true. req gives
// the rest of the request (id, parameters, outputs); its Inputs are
// ignored.
func RequestBody(req InferRequest, inputs []Tensor, binary bool) (body []byte, jsonLen int, err error) {
	b := []byte(`{`)
	if req.ID != "" {
		b = append(b, `"id":`...)
		b = appendString(b, req.ID)
		b = append(b, ',')
	}
	if len(req.Parameters) > 0 {
		p, err := json.Marshal(req.Parameters)
		if err != nil {
			return nil, 0, fmt.Errorf("encoding the request parameters: %w", err)
		}
		b = append(b, `"parameters":`...)
		b = append(b, p...)
		b = append(b, ',')
	}
	if len(req.Outputs) > 0 {
		o, err := json.Marshal(req.Outputs)
		if err != nil {
			return nil, 0, fmt.Errorf("encoding the requested outputs: %w", err)
		}
		b = append(b, `"outputs":`...)
		b = append(b, o...)
		b = append(b, ',')
	}
	b = append(b, `"inputs":[`...)
	for i, t := range inputs {
		if err := t.Check(); err != nil {
			return nil, 0, fmt.Errorf("input %w", err)
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = appendTensorHead(b, t)
		if binary {
			size, _ := RawSize(t)
			b = append(b, `,"parameters":{"binary_data_size":`...)
			b = strconv.AppendInt(b, int64(size), 10)
			b = append(b, "}}"...)
			continue
		}
		b = append(b, `,"data":`...)
		if b, err = AppendData(b, t); err != nil {
			return nil, 0, fmt.Errorf("input %w", err)
		}
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	jsonLen = len(b)
	if binary {
		for _, t := range inputs {
			if b, err = AppendRaw(b, t); err != nil {
				return nil, 0, fmt.Errorf("input %w", err)
			}
		}
	}
	return b, jsonLen, nil
}

// ParseResponse decodes the body of an infer response into a response
// whose Outputs have typed Data (see Tensor), whether their data came as
// JSON, with the special-value tokens AppendResponse writes, or as binary
// tensor data after jsonLen bytes of JSON (the Inference-Header-Content-
// Length; len(body) when the response has none).
func ParseResponse(body []byte, jsonLen int) (InferResponse, error) {
	if jsonLen < 0 || jsonLen > len(body) {
		return InferResponse{}, fmt.Errorf("the JSON length %d is outside the body's %d bytes", jsonLen, len(body))
	}
	var wire struct {
		ModelName    string         `json:"model_name"`
		ModelVersion string         `json:"model_version"`
		ID           string         `json:"id"`
		Parameters   map[string]any `json:"parameters"`
		Outputs      []RequestInput `json:"outputs"`
	}
	js := body[:jsonLen]
	if err := json.Unmarshal(js, &wire); err != nil {
		var syntax *json.SyntaxError
		quoted, ok := quoteSpecialFloats(js)
		if !errors.As(err, &syntax) || !ok || json.Unmarshal(quoted, &wire) != nil {
			return InferResponse{}, fmt.Errorf("the response is not an infer response: %w", err)
		}
	}
	// Outputs carry binary data as inputs do; read them alike.
	binary, err := BinaryInputs(&InferRequest{Inputs: wire.Outputs}, body[jsonLen:])
	if err != nil {
		return InferResponse{}, fmt.Errorf("binary data of the response: %w", err)
	}
	resp := InferResponse{ModelName: wire.ModelName, ModelVersion: wire.ModelVersion, ID: wire.ID, Parameters: wire.Parameters, Outputs: make([]Tensor, len(wire.Outputs))}
	for i, o := range wire.Outputs {
		var t Tensor
		if binary != nil && binary[i] != nil {
			t, err = DecodeBinary(o, binary[i])
		} else {
			t, err = Decode(o)
		}
		if err != nil {
			return InferResponse{}, fmt.Errorf("decoding output %q: %w", o.Name, err)
		}
		resp.Outputs[i] = t
	}
	return resp, nil
}
