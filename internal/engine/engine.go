// Package engine defines what a model runtime provides to the replica server:
// a loaded Model that describes its tensors and turns decoded inputs into
// outputs. Each runtime lives in its own sub-package (engine/trees, ...).
package engine

import (
	"context"

	"github.com/ebb-ml/ebb/internal/oip"
)

// Model is a model loaded in memory, ready to predict. Predict must be safe
// for concurrent use.
type Model interface {
	// Metadata describes the model's inputs and outputs; -1 marks a dynamic
	// dimension (usually the batch), an empty shape a scalar, and a nil
	// shape a tensor declared without one, which takes any shape.
	Metadata() oip.ModelMetadata
	// Predict runs inference. Inputs are already decoded and match the
	// metadata's names; Predict still checks shapes and datatypes and
	// returns an *InputError when the caller sent something wrong.
	Predict(ctx context.Context, inputs []oip.Tensor) ([]oip.Tensor, error)
}

// OutputSelector is a Model that can compute only some of its outputs; the
// replica server calls PredictOutputs when a request names the outputs it
// wants, so that a model does no work for outputs nobody asked for.
type OutputSelector interface {
	// PredictOutputs is Predict computing only the outputs named in
	// outputs (every output when it is empty), returned in the model's
	// order.
	PredictOutputs(ctx context.Context, inputs []oip.Tensor, outputs []string) ([]oip.Tensor, error)
}

// Sizer is a Model that knows how many bytes of memory it holds. A replica
// hosting many models (pool mode) counts a model at its RSS growth across
// the load; for a model that lives in Go's heap that growth is mostly the
// garbage of parsing it, so the replica counts ModelBytes instead when the
// model has it.
type Sizer interface {
	ModelBytes() int64
}

// InputError reports a request the model cannot evaluate because of what the
// caller sent (wrong shape, datatype or name); servers answer it with 400.
type InputError struct {
	Message string
}

func (e *InputError) Error() string { return e.Message }
