//go:build !cgo

package onnx

import (
	"context"
	"fmt"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
)

var _ engine.Model = (*Model)(nil)

// cgoEnabled is false: this build cannot call ONNX Runtime.
const cgoEnabled = false

// Model is an ONNX model; in a build without cgo none can be loaded.
type Model struct{}

// Init always fails in a build without cgo.
func Init(lib string) error { return errNoCgo }

// Load always fails in a build without cgo.
func Load(path string, opts Options) (*Model, error) {
	return nil, fmt.Errorf("onnx model %s: %w", path, errNoCgo)
}

// Metadata returns nothing: no Model exists without cgo.
func (m *Model) Metadata() oip.ModelMetadata { return oip.ModelMetadata{Platform: Platform} }

// Predict always fails in a build without cgo.
func (m *Model) Predict(ctx context.Context, inputs []oip.Tensor) ([]oip.Tensor, error) {
	return nil, errNoCgo
}

// PredictOutputs always fails in a build without cgo.
func (m *Model) PredictOutputs(ctx context.Context, inputs []oip.Tensor, outputs []string) ([]oip.Tensor, error) {
	return nil, errNoCgo
}

// IntraOpThreads returns 0: no Model exists without cgo.
func (m *Model) IntraOpThreads() int { return 0 }

// Close does nothing.
func (m *Model) Close() error { return nil }
