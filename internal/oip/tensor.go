package oip

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Tensor is a decoded tensor. Data holds a flat row-major slice whose Go type
// follows Datatype, as the table in datatype.go gives it: []bool, []int8 ...
// []uint64, []Float16, []BFloat16, []float32, []float64, or []string for
// BYTES. A rank-0 tensor (a scalar) has an empty, non-nil Shape and one
// element.
type Tensor struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
	Data     any     `json:"data"`
}

// Elements returns the number of elements shape describes (1 for the empty
// shape of a scalar), or an error when a dimension is negative or the count
// overflows.
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
// A scalar (shape []) may be sent as a one-element array or as the bare
// element.
//
// Elements of FP16, BF16, FP32 and FP64 may also be null (a missing value:
// NaN) or one of the strings "NaN", "Infinity", "-Infinity", "Inf" and
// "-Inf" (any case); ParseRequest turns the bare tokens Triton and Python
// write (NaN, Infinity, -Infinity) into those strings. Integers must be
// whole and in their datatype's range; a finite float too large for its
// datatype is refused rather than made infinite.
//
// Decode allocates in proportion to the bytes of in.Data, never to what
// the shape declares.
func Decode(in RequestInput) (Tensor, error) {
	t := Tensor{Name: in.Name, Datatype: in.Datatype, Shape: in.Shape}
	want, err := Elements(in.Shape)
	if err != nil {
		return t, fmt.Errorf("input %q: %w", in.Name, err)
	}
	if !Known(in.Datatype) {
		return t, fmt.Errorf("input %q: %w", in.Name, unknownDatatype(in.Datatype))
	}
	if data, ok := decodeFlat(in.Datatype, in.Data, want); ok {
		t.Data = data
		return t, nil
	}
	var raw []json.RawMessage
	if err := flatten(in.Data, &raw, 0, len(in.Shape) == 0); err != nil {
		return t, fmt.Errorf("input %q: %w", in.Name, err)
	}
	if len(raw) != want {
		return t, fmt.Errorf("input %q: shape %v holds %d elements but data has %d", in.Name, in.Shape, want, len(raw))
	}
	t.Data, err = decodeElements(in.Datatype, raw)
	if err != nil {
		return t, fmt.Errorf("input %q: data does not match datatype %s: %w", in.Name, in.Datatype, err)
	}
	return t, nil
}

// decodeElements decodes the JSON elements raw as datatype.
func decodeElements(datatype string, raw []json.RawMessage) (any, error) {
	switch datatype {
	case BOOL:
		return decodeAll[bool](raw)
	case INT8:
		return decodeAll[int8](raw)
	case INT16:
		return decodeAll[int16](raw)
	case INT32:
		return decodeAll[int32](raw)
	case INT64:
		return decodeAll[int64](raw)
	case UINT8:
		return decodeAll[uint8](raw)
	case UINT16:
		return decodeAll[uint16](raw)
	case UINT32:
		return decodeAll[uint32](raw)
	case UINT64:
		return decodeAll[uint64](raw)
	case FP16:
		return decodeHalves[Float16](raw, FP16)
	case BF16:
		return decodeHalves[BFloat16](raw, BF16)
	case FP32:
		return decodeFloats[float32](raw, 32)
	case FP64:
		return decodeFloats[float64](raw, 64)
	case BYTES:
		return decodeAll[string](raw)
	}
	return nil, unknownDatatype(datatype)
}

const maxNesting = 32

// decodeFlat is the fast path for the common case, a flat array of exactly
// want numbers or booleans (flat.go). Anything else (nested data, nulls,
// strings, a count or type mismatch) reports false and takes the
// element-by-element path, which explains the problem.
func decodeFlat(datatype string, data json.RawMessage, want int) (any, bool) {
	d := bytes.Trim(data, " \t\n\r") // JSON's white space
	if len(d) < 2 || d[0] != '[' {
		return nil, false
	}
	switch datatype {
	case FP32:
		return flat(d, want, parseFloat32)
	case FP64:
		return flat(d, want, parseFloat64)
	case INT32:
		return flat(d, want, parseInt32)
	case INT64:
		return flat(d, want, parseInt64)
	case BOOL:
		return flat(d, want, parseBool)
	case INT8:
		return flat(d, want, parseInt8)
	case INT16:
		return flat(d, want, parseInt16)
	case UINT8:
		return flat(d, want, parseUint8)
	case UINT16:
		return flat(d, want, parseUint16)
	case UINT32:
		return flat(d, want, parseUint32)
	case UINT64:
		return flat(d, want, parseUint64)
	case FP16:
		return flat(d, want, parseFP16)
	case BF16:
		return flat(d, want, parseBF16)
	}
	return nil, false
}

// maxElementsIn bounds how many elements the JSON array d can hold: each
// takes at least one byte and all but the last a comma, inside two
// brackets. Memory allocated by shape is capped by it, so decoding costs
// memory in proportion to the bytes received, never to the declared shape.
func maxElementsIn(d []byte) int { return len(d) / 2 }

// maxEcho is the most bytes of a client's element an error message quotes.
const maxEcho = 32

// echo quotes at most maxEcho bytes of r for an error message, so that an
// error never carries back a multi-kilobyte input.
func echo(r []byte) string {
	r = bytes.TrimSpace(r)
	if len(r) <= maxEcho {
		return string(r)
	}
	return fmt.Sprintf("%s... (%d bytes)", r[:maxEcho], len(r))
}

// flatten appends every scalar of a possibly nested JSON array to out. A
// bare scalar at the top is accepted only when scalarOK (the shape is []).
func flatten(b json.RawMessage, out *[]json.RawMessage, depth int, scalarOK bool) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return fmt.Errorf("data is missing")
	}
	if b[0] != '[' {
		if depth == 0 && !scalarOK {
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
		if err := flatten(it, out, depth+1, false); err != nil {
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
			return nil, fmt.Errorf("element %d is null; only FP16, BF16, FP32 and FP64 accept null (as a missing value)", i)
		}
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return nil, fmt.Errorf("element %d (%s)", i, echo(r))
		}
	}
	return out, nil
}

// decodeFloats is decodeAll for FP32 and FP64, where null (a missing value)
// and the special-value strings are accepted too.
func decodeFloats[T float32 | float64](raw []json.RawMessage, bits int) ([]T, error) {
	out := make([]T, len(raw))
	for i, r := range raw {
		f, err := parseFloatElement(r, bits)
		if err != nil {
			return nil, fmt.Errorf("element %d (%s)%s", i, echo(r), rangeHint(err, bits))
		}
		out[i] = T(f)
	}
	return out, nil
}

// decodeHalves is decodeFloats for FP16 and BF16.
func decodeHalves[H Float16 | BFloat16](raw []json.RawMessage, datatype string) ([]H, error) {
	out := make([]H, len(raw))
	for i, r := range raw {
		f, err := parseFloatElement(r, 32)
		var h uint16
		ok := err == nil
		if ok {
			h, ok = halfFrom(f, datatype)
		}
		if !ok {
			return nil, fmt.Errorf("element %d (%s)%s", i, echo(r), halfRangeHint(err, datatype))
		}
		out[i] = H(h)
	}
	return out, nil
}

var errOutOfRange = errors.New("number out of range")

// rangeHint explains a float out of range for its datatype.
func rangeHint(err error, bits int) string {
	if !errors.Is(err, errOutOfRange) {
		return ""
	}
	if bits == 32 {
		return fmt.Sprintf(" is out of range: FP32 holds magnitudes up to %g", math.MaxFloat32)
	}
	return fmt.Sprintf(" is out of range: FP64 holds magnitudes up to %g", math.MaxFloat64)
}

func halfRangeHint(err error, datatype string) string {
	if err != nil && !errors.Is(err, errOutOfRange) {
		return ""
	}
	if datatype == FP16 {
		return " is out of range: FP16 holds magnitudes up to 65504"
	}
	return fmt.Sprintf(" is out of range: BF16 holds magnitudes up to %g", BFloat16(0x7f7f).Float32())
}

// parseFloatElement reads one JSON element of a floating-point tensor: a
// number, null (NaN, a missing value) or a special-value string. bits is
// the precision it must fit (32 or 64); a finite number beyond it is
// errOutOfRange.
func parseFloatElement(r []byte, bits int) (float64, error) {
	if len(r) == 0 {
		return 0, errors.New("empty element")
	}
	switch c := r[0]; {
	case c == 'n':
		if bytes.Equal(r, null) {
			return math.NaN(), nil
		}
	case c == '"':
		var s string
		if err := json.Unmarshal(r, &s); err != nil {
			return 0, err
		}
		if f, ok := parseSpecial(s); ok {
			return f, nil
		}
		return 0, fmt.Errorf("string %q is not a number: of strings, only %s are", s, specialNames)
	case c == '-' || (c >= '0' && c <= '9'):
		f, err := strconv.ParseFloat(string(r), bits)
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange && math.IsInf(f, 0) {
			return 0, errOutOfRange
		}
		if err != nil {
			return 0, err
		}
		return f, nil
	}
	return 0, errors.New("not a number")
}

// specialNames lists the special-value strings for error messages.
const specialNames = `"NaN", "Infinity", "-Infinity"`

// parseSpecial reads the name of a special float: nan, inf or infinity,
// in any case, with an optional sign.
func parseSpecial(s string) (float64, bool) {
	sign := 1.0
	switch {
	case strings.HasPrefix(s, "-"):
		sign, s = -1, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	switch {
	case strings.EqualFold(s, "nan"):
		return math.NaN(), true
	case strings.EqualFold(s, "inf"), strings.EqualFold(s, "infinity"):
		return math.Inf(int(sign)), true
	}
	return 0, false
}

// Float32s returns t's data converted to float32, for engines that compute in
// float32 whatever numeric type the client sent. Data already []float32 is
// returned as it is.
func (t Tensor) Float32s() ([]float32, error) {
	switch d := t.Data.(type) {
	case []float32:
		return d, nil
	case []float64:
		return convert[float64, float32](d), nil
	case []int8:
		return convert[int8, float32](d), nil
	case []int16:
		return convert[int16, float32](d), nil
	case []int32:
		return convert[int32, float32](d), nil
	case []int64:
		return convert[int64, float32](d), nil
	case []uint8:
		return convert[uint8, float32](d), nil
	case []uint16:
		return convert[uint16, float32](d), nil
	case []uint32:
		return convert[uint32, float32](d), nil
	case []uint64:
		return convert[uint64, float32](d), nil
	case []Float16:
		out := make([]float32, len(d))
		for i, h := range d {
			out[i] = h.Float32()
		}
		return out, nil
	case []BFloat16:
		out := make([]float32, len(d))
		for i, v := range d {
			out[i] = v.Float32()
		}
		return out, nil
	default:
		return nil, fmt.Errorf("input %q: datatype %s is not numeric", t.Name, t.Datatype)
	}
}

// Number is a Go type that holds the elements of a numeric datatype other
// than FP16 and BF16.
type Number interface {
	int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | uint64 | float32 | float64
}

func convert[From, To Number](in []From) []To {
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
	if !Known(t.Datatype) {
		return fmt.Errorf("%q: %w", t.Name, unknownDatatype(t.Datatype))
	}
	dt, ok := DatatypeOf(t.Data)
	if !ok || dt != t.Datatype {
		return fmt.Errorf("%q: data of type %T does not match datatype %s (%s)", t.Name, t.Data, t.Datatype, GoType(t.Datatype))
	}
	if n, _ := DataLen(t.Data); n != want {
		return fmt.Errorf("%q: shape %s holds %d elements but data has %d", t.Name, FormatShape(t.Shape), want, n)
	}
	return nil
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
