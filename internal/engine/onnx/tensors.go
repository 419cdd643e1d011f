//go:build cgo

package onnx

import (
	"fmt"
	"math"
	"slices"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
)

func inputError(format string, args ...any) error {
	return &engine.InputError{Message: fmt.Sprintf(format, args...)}
}

// newValue checks t against spec (rank, fixed dimensions, element count,
// datatype) and returns it as an ONNX Runtime value of spec's type.
func newValue(spec tensorSpec, t oip.Tensor) (ort.Value, error) {
	if !shapeMatches(spec.shape, t.Shape) {
		return nil, inputError("input %q: shape %v given, model expects %v (-1 is any size)", spec.name, t.Shape, spec.shape)
	}
	n, err := oip.Elements(t.Shape)
	if err != nil {
		return nil, inputError("input %q: %v", spec.name, err)
	}
	if got := dataLen(t.Data); got != n {
		return nil, inputError("input %q: shape %v holds %d elements but data has %d", spec.name, t.Shape, n, got)
	}
	shape := ort.Shape(slices.Clone(t.Shape))
	switch spec.datatype {
	case oip.FP32:
		return numeric[float32](spec, t, shape)
	case oip.FP64:
		return numeric[float64](spec, t, shape)
	case oip.INT32:
		return numeric[int32](spec, t, shape)
	case oip.INT64:
		return numeric[int64](spec, t, shape)
	case oip.BOOL:
		d, ok := t.Data.([]bool)
		if !ok {
			return nil, inputError("input %q: datatype %s given, model expects BOOL", spec.name, t.Datatype)
		}
		return newTensor(shape, d)
	case oip.BYTES:
		d, ok := t.Data.([]string)
		if !ok {
			return nil, inputError("input %q: datatype %s given, model expects BYTES", spec.name, t.Datatype)
		}
		if len(shape) == 0 {
			return nil, inputError("input %q: a scalar string is not supported: send shape [1]", spec.name)
		}
		st, err := ort.NewStringTensor(shape)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", spec.name, err)
		}
		if err := st.SetContents(d); err != nil {
			st.Destroy()
			return nil, fmt.Errorf("input %q: %w", spec.name, err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("input %q: unsupported datatype %s", spec.name, spec.datatype)
}

// shapeMatches reports whether given has want's rank and agrees on every
// fixed (non -1) dimension.
func shapeMatches(want, given []int64) bool {
	if len(want) != len(given) {
		return false
	}
	for i, d := range want {
		if d >= 0 && given[i] != d {
			return false
		}
	}
	return true
}

func dataLen(data any) int {
	switch d := data.(type) {
	case []float32:
		return len(d)
	case []float64:
		return len(d)
	case []int32:
		return len(d)
	case []int64:
		return len(d)
	case []bool:
		return len(d)
	case []string:
		return len(d)
	}
	return -1
}

type number interface {
	float32 | float64 | int32 | int64
}

// numeric builds a tensor of element type T from any numeric data,
// converting it; a float becomes an integer only when it is whole and in
// range.
func numeric[T number](spec tensorSpec, t oip.Tensor, shape ort.Shape) (ort.Value, error) {
	var d []T
	var err error
	switch src := t.Data.(type) {
	case []T:
		d = src
	case []float32:
		d, err = convert[float32, T](src)
	case []float64:
		d, err = convert[float64, T](src)
	case []int32:
		d, err = convert[int32, T](src)
	case []int64:
		d, err = convert[int64, T](src)
	default:
		return nil, inputError("input %q: datatype %s given, model expects %s", spec.name, t.Datatype, spec.datatype)
	}
	if err != nil {
		return nil, inputError("input %q: %s data for a %s input: %v", spec.name, t.Datatype, spec.datatype, err)
	}
	return newTensor(shape, d)
}

func convert[From, To number](in []From) ([]To, error) {
	out := make([]To, len(in))
	var zero To
	_, toInt := any(zero).(int32)
	_, toInt64 := any(zero).(int64)
	for i, v := range in {
		if toInt || toInt64 {
			f := float64(v)
			// [lo, hi) is the range, both bounds exact in a float64.
			lo, hi := float64(math.MinInt32), float64(math.MaxInt32)+1
			if toInt64 {
				lo, hi = float64(math.MinInt64), -float64(math.MinInt64)
			}
			if f != math.Trunc(f) || f < lo || f >= hi {
				return nil, fmt.Errorf("element %d (%v) is not a whole number in range", i, v)
			}
		}
		out[i] = To(v)
	}
	return out, nil
}

// newTensor wraps data in a tensor of shape; rank 0 makes a scalar.
func newTensor[T ort.TensorData](shape ort.Shape, data []T) (ort.Value, error) {
	if len(shape) == 0 {
		return ort.NewScalar(data[0])
	}
	return ort.NewTensor(shape, data)
}

// toTensor converts an output value of the run into an OIP tensor of
// spec's name. The data is copied out of ONNX Runtime; v can be destroyed.
func toTensor(spec tensorSpec, v ort.Value) (oip.Tensor, error) {
	t := oip.Tensor{Name: spec.name, Shape: slices.Clone([]int64(v.GetShape()))}
	switch o := v.(type) {
	case *ort.Tensor[float32]:
		t.Datatype, t.Data = oip.FP32, o.GetData()
	case *ort.Tensor[float64]:
		t.Datatype, t.Data = oip.FP64, o.GetData()
	case *ort.Tensor[int32]:
		t.Datatype, t.Data = oip.INT32, o.GetData()
	case *ort.Tensor[int64]:
		t.Datatype, t.Data = oip.INT64, o.GetData()
	case *ort.Tensor[bool]:
		t.Datatype, t.Data = oip.BOOL, o.GetData()
	case *ort.StringTensor:
		s, err := o.GetContents()
		if err != nil {
			return t, fmt.Errorf("output %q: reading strings: %w", spec.name, err)
		}
		t.Datatype, t.Data = oip.BYTES, s
	default:
		return t, fmt.Errorf("output %q: ONNX Runtime returned a %T, which ebb cannot serve", spec.name, v)
	}
	if t.Shape == nil {
		t.Shape = []int64{}
	}
	return t, nil
}
