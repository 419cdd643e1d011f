package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
)

// TestCheckInputs checks decoded tensors (as a gRPC server has them)
// against the metadata of twoInputModel: a FP32 [1], b INT64 [-1].
func TestCheckInputs(t *testing.T) {
	a := oip.Tensor{Name: "a", Datatype: oip.FP32, Shape: []int64{1}, Data: []float32{2}}
	b := oip.Tensor{Name: "b", Datatype: oip.INT64, Shape: []int64{2}, Data: []int64{1, 2}}
	with := func(t oip.Tensor, change func(*oip.Tensor)) oip.Tensor {
		change(&t)
		return t
	}
	tests := []struct {
		name    string
		in      []oip.Tensor
		want    []oip.Tensor
		wantErr []string
	}{
		{name: "metadata order", in: []oip.Tensor{b, a}, want: []oip.Tensor{a, b}},
		{name: "numeric conversion allowed", in: []oip.Tensor{a, with(b, func(t *oip.Tensor) { t.Datatype, t.Data = oip.FP64, []float64{1, 2} })},
			want: []oip.Tensor{a, {Name: "b", Datatype: oip.FP64, Shape: []int64{2}, Data: []float64{1, 2}}}},
		{name: "unknown", in: []oip.Tensor{a, b, with(a, func(t *oip.Tensor) { t.Name = "c" })},
			wantErr: []string{`unknown input "c"`, `"a" (FP32 [1]), "b" (INT64 [-1])`}},
		{name: "twice", in: []oip.Tensor{a, a, b}, wantErr: []string{`input "a" appears more than once`}},
		{name: "missing", in: []oip.Tensor{b}, wantErr: []string{`missing input "a"`}},
		{name: "datatype missing", in: []oip.Tensor{with(a, func(t *oip.Tensor) { t.Datatype = "" }), b},
			wantErr: []string{`input "a": datatype is missing: model expects FP32`}},
		{name: "datatype not convertible", in: []oip.Tensor{with(a, func(t *oip.Tensor) { t.Datatype, t.Data = oip.BYTES, []string{"x"} }), b},
			wantErr: []string{`input "a": datatype BYTES given, model expects FP32`}},
		{name: "shape missing", in: []oip.Tensor{with(a, func(t *oip.Tensor) { t.Shape = nil }), b},
			wantErr: []string{`input "a": shape is missing: model expects [1]`}},
		{name: "wrong fixed dimension", in: []oip.Tensor{with(a, func(t *oip.Tensor) { t.Shape, t.Data = []int64{2}, []float32{1, 2} }), b},
			wantErr: []string{`input "a": shape [2] given, model expects [1]`}},
		{name: "wrong rank", in: []oip.Tensor{a, with(b, func(t *oip.Tensor) { t.Shape = []int64{1, 2} })},
			wantErr: []string{`input "b": shape [1,2] given, model expects [-1]`}},
		{name: "data of another type", in: []oip.Tensor{a, with(b, func(t *oip.Tensor) { t.Data = []int32{1, 2} })},
			wantErr: []string{`input "b": data of type []int32 does not match datatype INT64`}},
		{name: "data does not fill the shape", in: []oip.Tensor{a, with(b, func(t *oip.Tensor) { t.Data = []int64{1} })},
			wantErr: []string{`input "b": shape [2] holds 2 elements but data has 1`}},
		{name: "negative dimension", in: []oip.Tensor{a, with(b, func(t *oip.Tensor) { t.Shape = []int64{-1} })},
			wantErr: []string{`input "b"`, "negative dimension"}},
	}
	s := New("m", &twoInputModel{}, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.CheckInputs(tt.in)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("CheckInputs (-want +got):\n%s", diff)
				}
				return
			}
			var re *RequestError
			if !errors.As(err, &re) || re.Status != 400 {
				t.Fatalf("CheckInputs error = %#v; want a *RequestError with status 400", err)
			}
			for _, sub := range tt.wantErr {
				if !strings.Contains(re.Msg, sub) {
					t.Errorf("error %q does not mention %q", re.Msg, sub)
				}
			}
		})
	}
}

// TestInferErrors checks the error contract of Infer, batching off and on.
func TestInferErrors(t *testing.T) {
	row := []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{1, 4}, Data: []float32{1, 2, 3, 4}}}
	tests := []struct {
		name    string
		model   engine.Model
		batch   bool
		inputs  []oip.Tensor
		outputs []string
		// wantRequestError is the *RequestError message, or "" when the
		// error must be something else, containing wantErr.
		wantRequestError string
		wantErr          string
	}{
		{name: "unknown output", model: &fakeModel{width: 4}, inputs: row, outputs: []string{"proba"},
			wantRequestError: `unknown output "proba": model "m" has outputs "score" (FP32 [-1]), "label" (INT64 [-1])`},
		{name: "model rejects the input", model: &fakeModel{width: 4, predict: func(context.Context, []oip.Tensor) ([]oip.Tensor, error) {
			return nil, &engine.InputError{Message: "feature 3 must be positive"}
		}}, inputs: row, wantRequestError: "feature 3 must be positive"},
		{name: "model rejects the input, batching", batch: true, model: &fakeModel{width: 4, predict: func(context.Context, []oip.Tensor) ([]oip.Tensor, error) {
			return nil, &engine.InputError{Message: "feature 3 must be positive"}
		}}, inputs: row, wantRequestError: "feature 3 must be positive"},
		{name: "model fails", model: &fakeModel{width: 4, predict: func(context.Context, []oip.Tensor) ([]oip.Tensor, error) {
			return nil, fmt.Errorf("out of memory")
		}}, inputs: row, wantErr: "out of memory"},
		{name: "model panics, batching", batch: true, model: &fakeModel{width: 4, predict: func(context.Context, []oip.Tensor) ([]oip.Tensor, error) {
			panic("boom")
		}}, inputs: row, wantErr: "internal error in the model engine: boom"},
		{name: "batch sizes disagree", batch: true, model: &pairModel{}, inputs: []oip.Tensor{
			{Name: "a", Datatype: oip.FP32, Shape: []int64{2}, Data: []float32{1, 2}},
			{Name: "b", Datatype: oip.INT64, Shape: []int64{3}, Data: []int64{1, 2, 3}},
		}, wantRequestError: `input "b" has 3 rows but "a" has 2: dimension 0 is the batch and must agree across inputs`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{}
			if tt.batch {
				opts.Batching = BatchingPolicy(1, nil, 0)
			}
			s := New("m", tt.model, opts)
			if s.Batching() != tt.batch {
				t.Fatalf("Batching() = %v, want %v", s.Batching(), tt.batch)
			}
			_, err := s.Infer(context.Background(), tt.inputs, tt.outputs)
			var re *RequestError
			if tt.wantRequestError != "" {
				if !errors.As(err, &re) || re.Status != 400 || re.Msg != tt.wantRequestError {
					t.Fatalf("Infer error = %#v; want a *RequestError 400 %q", err, tt.wantRequestError)
				}
				return
			}
			if err == nil || errors.As(err, &re) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Infer error = %#v; want a server error containing %q", err, tt.wantErr)
			}
		})
	}
}

// pairModel takes a (FP32 [-1]) and b (INT64 [-1]) and returns c = a + b
// (FP64 [-1]): two inputs that batch together.
type pairModel struct{}

func (pairModel) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{
		Platform: "fake",
		Inputs: []oip.TensorMetadata{
			{Name: "a", Datatype: oip.FP32, Shape: []int64{-1}},
			{Name: "b", Datatype: oip.INT64, Shape: []int64{-1}},
		},
		Outputs: []oip.TensorMetadata{{Name: "c", Datatype: oip.FP64, Shape: []int64{-1}}},
	}
}

func (pairModel) Predict(_ context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
	a, b := in[0].Data.([]float32), in[1].Data.([]int64)
	c := make([]float64, len(a))
	for i := range a {
		c[i] = float64(a[i]) + float64(b[i])
	}
	return []oip.Tensor{{Name: "c", Datatype: oip.FP64, Shape: []int64{int64(len(c))}, Data: c}}, nil
}
