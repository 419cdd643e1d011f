// Package echo is a model that returns its inputs as outputs. It does no
// work, so serving it measures the serving path alone: benchmarks use it as
// the no-op backend, and tests use it where any model will do.
//
// Its model file is optional; when given, it is a JSON signature
// {"inputs":[{"name","datatype","shape"}]} that the model accepts. Without one
// it accepts a single FP32 input named "input" of any shape [-1, -1].
// The file may also set "workMs": the CPU time each prediction burns
// (a busy loop, bounded by MaxWorkMs and the request's context), so that
// benchmarks and tests can saturate a replica's CPU the way a real model
// does.
package echo

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
)

// maxSignatureBytes bounds the signature file Load reads.
const maxSignatureBytes = 1 << 20

// MaxWorkMs bounds a signature's workMs.
const MaxWorkMs = 10000

// Model echoes its inputs.
type Model struct {
	meta oip.ModelMetadata
	work time.Duration // CPU burnt per prediction
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
			WorkMs float64              `json:"workMs"`
		}
		if err := json.Unmarshal(b, &sig); err != nil || len(sig.Inputs) == 0 {
			return nil, fmt.Errorf("echo model %s: want a JSON signature like {\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[-1,4]}]}", path)
		}
		if sig.WorkMs < 0 || sig.WorkMs > MaxWorkMs {
			return nil, fmt.Errorf("echo model %s: workMs %g is out of range: give 0 to %d", path, sig.WorkMs, MaxWorkMs)
		}
		m.meta.Inputs = sig.Inputs
		m.work = time.Duration(sig.WorkMs * float64(time.Millisecond))
	}
	m.meta.Outputs = m.meta.Inputs
	return m, nil
}

// Metadata returns the signature; outputs mirror inputs.
func (m *Model) Metadata() oip.ModelMetadata { return m.meta }

// Predict returns the inputs unchanged, after burning the signature's
// workMs of CPU.
func (m *Model) Predict(ctx context.Context, inputs []oip.Tensor) ([]oip.Tensor, error) {
	if m.work > 0 {
		if err := burn(ctx, m.work); err != nil {
			return nil, err
		}
	}
	return inputs, nil
}

// burn keeps a CPU busy for d of this thread's CPU time, checking ctx
// between slices, so that a saturated replica slows down as a real model
// does instead of overlapping sleeps.
func burn(ctx context.Context, d time.Duration) error {
	runtime.LockOSThread() // one thread's CPU clock for the whole burn
	defer runtime.UnlockOSThread()
	start := threadCPU()
	for x := uint64(1); ; {
		for range 20000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
		sink.Store(x)
		if threadCPU()-start >= d {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// sink keeps burn's loop from being optimised away.
var sink atomic.Uint64
