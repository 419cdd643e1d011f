// Package echo is a model that returns its inputs as outputs. It does no
// work, so serving it measures the serving path alone: benchmarks use it as
// the no-op backend, and tests use it where any model will do.
//
// Its model file is optional; when given, it is a JSON signature
// {"inputs":[{"name","datatype","shape"}]} that the model accepts. Without one
// it accepts a single FP32 input named "input" of any shape [-1, -1].
package echo

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
)

// maxSignatureBytes bounds the signature file Load reads.
const maxSignatureBytes = 1 << 20

// Model echoes its inputs.
type Model struct {
	meta oip.ModelMetadata
}

var _ engine.Model = (*Model)(nil)

// Load reads an optional signature file; path "" gives the default
// signature.
func Load(path string) (*Model, error) {
	m := &Model{meta: oip.ModelMetadata{
		Platform: "ebb_echo",
		Inputs:   []oip.TensorMetadata{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, -1}}},
	}}
	if path != "" {
		b, err := engine.ReadModelFile(path, maxSignatureBytes)
		if err != nil {
			return nil, fmt.Errorf("echo model %s: %w", path, err)
		}
		var sig struct {
			Inputs []oip.TensorMetadata `json:"inputs"`
		}
		if err := json.Unmarshal(b, &sig); err != nil || len(sig.Inputs) == 0 {
			return nil, fmt.Errorf("echo model %s: want a JSON signature like {\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[-1,4]}]}", path)
		}
		m.meta.Inputs = sig.Inputs
	}
	m.meta.Outputs = m.meta.Inputs
	return m, nil
}

// Metadata returns the signature; outputs mirror inputs.
func (m *Model) Metadata() oip.ModelMetadata { return m.meta }

// Predict returns the inputs unchanged.
func (m *Model) Predict(_ context.Context, inputs []oip.Tensor) ([]oip.Tensor, error) {
	return inputs, nil
}
