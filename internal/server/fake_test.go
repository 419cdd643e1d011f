package server

import (
	"context"
	"fmt"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
)

// fakeModel is a hand-written engine.Model: it sums each row of input "x"
// (shape [-1, width]) into output "score" and thresholds it into "label".
// predict, when set, replaces that behaviour.
type fakeModel struct {
	width    int64
	versions []string
	predict  func(ctx context.Context, in []oip.Tensor) ([]oip.Tensor, error)
}

var _ engine.Model = (*fakeModel)(nil)

func (m *fakeModel) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{
		Name:     "fake-internal-name",
		Versions: m.versions,
		Platform: "fake",
		Inputs: []oip.TensorMetadata{
			{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, m.width}},
		},
		Outputs: []oip.TensorMetadata{
			{Name: "score", Datatype: oip.FP32, Shape: []int64{-1}},
			{Name: "label", Datatype: oip.INT64, Shape: []int64{-1}},
		},
	}
}

func (m *fakeModel) Predict(ctx context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
	if m.predict != nil {
		return m.predict(ctx, in)
	}
	if len(in) != 1 || in[0].Name != "x" {
		return nil, &engine.InputError{Message: fmt.Sprintf("want one input x, got %d", len(in))}
	}
	x, err := in[0].Float32s()
	if err != nil {
		return nil, &engine.InputError{Message: err.Error()}
	}
	rows := int(in[0].Shape[0])
	score := make([]float32, rows)
	label := make([]int64, rows)
	for r := range rows {
		for _, v := range x[r*int(m.width) : (r+1)*int(m.width)] {
			score[r] += v
		}
		if score[r] > 0 {
			label[r] = 1
		}
	}
	return []oip.Tensor{
		{Name: "score", Datatype: oip.FP32, Shape: []int64{int64(rows)}, Data: score},
		{Name: "label", Datatype: oip.INT64, Shape: []int64{int64(rows)}, Data: label},
	}, nil
}
