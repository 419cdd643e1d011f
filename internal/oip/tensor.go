package oip

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Tensor is a decoded tensor. Data holds a flat row-major slice whose Go type
// follows Datatype: []bool, []int32, []int64, []float32, []float64 or
// []string (BYTES).
type Tensor struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
	Data     any     `json:"data"`
}

// Elements returns the number of elements shape describes, or an error when a
// dimension is negative or the count overflows.
func Elements(shape []int64) (int, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v has a negative dimension", shape)
		}
		if d != 0 && n > math.MaxInt32/d {
			return 0, fmt.Errorf("shape %v is too large", shape)
		}
		n *= d
	}
	return int(n), nil
}

// Decode checks in against its declared shape and datatype and returns it as
// a Tensor with a typed, flat Data slice. Nested JSON arrays are flattened.
func Decode(in RequestInput) (Tensor, error) {
	t := Tensor{Name: in.Name, Datatype: in.Datatype, Shape: in.Shape}
	want, err := Elements(in.Shape)
	if err != nil {
		return t, fmt.Errorf("input %q: %w", in.Name, err)
	}
	if data, ok := decodeFlat(in.Datatype, in.Data, want); ok {
		t.Data = data
		return t, nil
	}
	var raw []json.RawMessage
	if err := flatten(in.Data, &raw, 0); err != nil {
		return t, fmt.Errorf("input %q: %w", in.Name, err)
	}
	if len(raw) != want {
		return t, fmt.Errorf("input %q: shape %v holds %d elements but data has %d", in.Name, in.Shape, want, len(raw))
	}
	switch in.Datatype {
	case BOOL:
		t.Data, err = decodeAll[bool](raw)
	case INT32:
		t.Data, err = decodeAll[int32](raw)
	case INT64:
		t.Data, err = decodeAll[int64](raw)
	case FP32:
		t.Data, err = decodeFloats[float32](raw)
	case FP64:
		t.Data, err = decodeFloats[float64](raw)
	case BYTES:
		t.Data, err = decodeAll[string](raw)
	default:
		return t, fmt.Errorf("input %q: unsupported datatype %q: use one of BOOL, INT32, INT64, FP32, FP64, BYTES", in.Name, in.Datatype)
	}
	if err != nil {
		return t, fmt.Errorf("input %q: data does not match datatype %s: %w", in.Name, in.Datatype, err)
	}
	return t, nil
}

const maxNesting = 32

// decodeFlat is the fast path for the common case, a flat array of exactly
// want non-null elements: one Unmarshal into the typed slice. Anything else
// (nested data, nulls, a count or type mismatch) reports false and takes the
// element-by-element path, which explains the problem.
func decodeFlat(datatype string, data json.RawMessage, want int) (any, bool) {
	d := bytes.TrimSpace(data)
	if len(d) < 2 || d[0] != '[' || bytes.IndexByte(d[1:], '[') >= 0 || bytes.Contains(d, null) {
		return nil, false
	}
	switch datatype {
	case FP32:
		return unmarshalN[float32](d, want)
	case FP64:
		return unmarshalN[float64](d, want)
	case INT32:
		return unmarshalN[int32](d, want)
	case INT64:
		return unmarshalN[int64](d, want)
	case BOOL:
		return unmarshalN[bool](d, want)
	}
	return nil, false
}

func unmarshalN[T any](d []byte, want int) (any, bool) {
	out := make([]T, 0, want)
	if json.Unmarshal(d, &out) != nil || len(out) != want {
		return nil, false
	}
	return out, true
}

// flatten appends every scalar of a possibly nested JSON array to out.
func flatten(b json.RawMessage, out *[]json.RawMessage, depth int) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return fmt.Errorf("data is missing")
	}
	if b[0] != '[' {
		if depth == 0 {
			return fmt.Errorf("data must be a JSON array")
		}
		*out = append(*out, b)
		return nil
	}
	if depth > maxNesting {
		return fmt.Errorf("data is nested more than %d levels", maxNesting)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return fmt.Errorf("data is not a valid JSON array: %w", err)
	}
	for _, it := range items {
		if err := flatten(it, out, depth+1); err != nil {
			return err
		}
	}
	return nil
}

var null = []byte("null")

func decodeAll[T any](raw []json.RawMessage) ([]T, error) {
	out := make([]T, len(raw))
	for i, r := range raw {
		if bytes.Equal(r, null) {
			return nil, fmt.Errorf("element %d is null; only FP32 and FP64 accept null (as a missing value)", i)
		}
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return nil, fmt.Errorf("element %d (%s)", i, strings.TrimSpace(string(r)))
		}
	}
	return out, nil
}

// decodeFloats is decodeAll for floating point, where JSON null stands for
// a missing value and decodes to NaN (JSON has no NaN literal).
func decodeFloats[T float32 | float64](raw []json.RawMessage) ([]T, error) {
	out := make([]T, len(raw))
	for i, r := range raw {
		if bytes.Equal(r, null) {
			out[i] = T(math.NaN())
			continue
		}
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return nil, fmt.Errorf("element %d (%s)", i, strings.TrimSpace(string(r)))
		}
	}
	return out, nil
}

// Float32s returns t's data converted to float32, for engines that compute in
// float32 whatever numeric type the client sent.
func (t Tensor) Float32s() ([]float32, error) {
	switch d := t.Data.(type) {
	case []float32:
		return d, nil
	case []float64:
		return convert[float64, float32](d), nil
	case []int32:
		return convert[int32, float32](d), nil
	case []int64:
		return convert[int64, float32](d), nil
	default:
		return nil, fmt.Errorf("input %q: datatype %s is not numeric", t.Name, t.Datatype)
	}
}

func convert[From, To int32 | int64 | float32 | float64](in []From) []To {
	out := make([]To, len(in))
	for i, v := range in {
		out[i] = To(v)
	}
	return out
}

// Check reports whether t.Data has the Go type t.Datatype implies and as
// many elements as t.Shape describes. The error names the tensor; callers
// prefix it with what the tensor is ("input", "output").
func (t Tensor) Check() error {
	want, err := Elements(t.Shape)
	if err != nil {
		return fmt.Errorf("%q: %w", t.Name, err)
	}
	var n int
	var ok bool
	switch t.Datatype {
	case BOOL:
		n, ok = length[bool](t.Data)
	case INT32:
		n, ok = length[int32](t.Data)
	case INT64:
		n, ok = length[int64](t.Data)
	case FP32:
		n, ok = length[float32](t.Data)
	case FP64:
		n, ok = length[float64](t.Data)
	case BYTES:
		n, ok = length[string](t.Data)
	default:
		return fmt.Errorf("%q: unsupported datatype %q: use one of BOOL, INT32, INT64, FP32, FP64, BYTES", t.Name, t.Datatype)
	}
	if !ok {
		return fmt.Errorf("%q: data of type %T does not match datatype %s", t.Name, t.Data, t.Datatype)
	}
	if n != want {
		return fmt.Errorf("%q: shape %s holds %d elements but data has %d", t.Name, FormatShape(t.Shape), want, n)
	}
	return nil
}

func length[T any](data any) (int, bool) {
	d, ok := data.([]T)
	return len(d), ok
}

// FormatShape writes a shape as [-1,10].
func FormatShape(shape []int64) string {
	b := []byte{'['}
	for i, d := range shape {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, d, 10)
	}
	return string(append(b, ']'))
}
