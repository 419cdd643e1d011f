package onnx

import (
	"fmt"
	"math"

	"github.com/ebb-ml/ebb/internal/oip"
)

// The replica server lets a numeric input of one datatype feed a model
// input of another (FP64 data for an FP32 input, INT64 for UINT8, ...).
// convertData does the conversion, refusing what would change a value:
// a fraction or an out-of-range number for an integer input, a finite
// number too large for a floating-point one.

// number is one element read from numeric data: a signed integer, an
// unsigned one, or a float.
type number struct {
	kind byte // 'i', 'u' or 'f'
	i    int64
	u    uint64
	f    float64
}

func (v number) String() string {
	switch v.kind {
	case 'i':
		return fmt.Sprint(v.i)
	case 'u':
		return fmt.Sprint(v.u)
	}
	return fmt.Sprint(v.f)
}

// numbers returns the length of numeric data and a reader of its elements;
// false when data is not numeric.
func numbers(data any) (int, func(int) number, bool) {
	switch d := data.(type) {
	case []int8:
		return len(d), func(i int) number { return number{kind: 'i', i: int64(d[i])} }, true
	case []int16:
		return len(d), func(i int) number { return number{kind: 'i', i: int64(d[i])} }, true
	case []int32:
		return len(d), func(i int) number { return number{kind: 'i', i: int64(d[i])} }, true
	case []int64:
		return len(d), func(i int) number { return number{kind: 'i', i: d[i]} }, true
	case []uint8:
		return len(d), func(i int) number { return number{kind: 'u', u: uint64(d[i])} }, true
	case []uint16:
		return len(d), func(i int) number { return number{kind: 'u', u: uint64(d[i])} }, true
	case []uint32:
		return len(d), func(i int) number { return number{kind: 'u', u: uint64(d[i])} }, true
	case []uint64:
		return len(d), func(i int) number { return number{kind: 'u', u: d[i]} }, true
	case []float32:
		return len(d), func(i int) number { return number{kind: 'f', f: float64(d[i])} }, true
	case []float64:
		return len(d), func(i int) number { return number{kind: 'f', f: d[i]} }, true
	case []oip.Float16:
		return len(d), func(i int) number { return number{kind: 'f', f: float64(d[i].Float32())} }, true
	case []oip.BFloat16:
		return len(d), func(i int) number { return number{kind: 'f', f: float64(d[i].Float32())} }, true
	}
	return 0, nil, false
}

// convertData returns numeric data as the Go type of datatype to (see
// oip.Tensor), unchanged when it already is. It fails, naming the first
// element at fault, when a value cannot be represented.
func convertData(data any, to string) (any, error) {
	if dt, ok := oip.DatatypeOf(data); ok && dt == to {
		return data, nil
	}
	n, at, ok := numbers(data)
	if !ok || !oip.IsNumeric(to) {
		return nil, fmt.Errorf("%T cannot be converted to %s", data, to)
	}
	switch to {
	case oip.INT8:
		return toSigned[int8](n, at, math.MinInt8, math.MaxInt8, to)
	case oip.INT16:
		return toSigned[int16](n, at, math.MinInt16, math.MaxInt16, to)
	case oip.INT32:
		return toSigned[int32](n, at, math.MinInt32, math.MaxInt32, to)
	case oip.INT64:
		return toSigned[int64](n, at, math.MinInt64, math.MaxInt64, to)
	case oip.UINT8:
		return toUnsigned[uint8](n, at, math.MaxUint8, to)
	case oip.UINT16:
		return toUnsigned[uint16](n, at, math.MaxUint16, to)
	case oip.UINT32:
		return toUnsigned[uint32](n, at, math.MaxUint32, to)
	case oip.UINT64:
		return toUnsigned[uint64](n, at, math.MaxUint64, to)
	case oip.FP64:
		return toFloats(n, at, func(f float64) (float64, bool) { return f, true }, to)
	case oip.FP32:
		return toFloats(n, at, func(f float64) (float32, bool) {
			g := float32(f)
			return g, !math.IsInf(float64(g), 0) || math.IsInf(f, 0)
		}, to)
	case oip.FP16:
		return toFloats(n, at, func(f float64) (oip.Float16, bool) {
			h := oip.Float16From(float32(f))
			return h, !math.IsInf(float64(h.Float32()), 0) || math.IsInf(f, 0)
		}, to)
	case oip.BF16:
		return toFloats(n, at, func(f float64) (oip.BFloat16, bool) {
			v := oip.BFloat16From(float32(f))
			return v, !math.IsInf(float64(v.Float32()), 0) || math.IsInf(f, 0)
		}, to)
	}
	return nil, fmt.Errorf("%T cannot be converted to %s", data, to)
}

func notWhole(i int, v number, to string) error {
	return fmt.Errorf("element %d (%v) is not a whole number in range for %s", i, v, to)
}

// toSigned converts to a signed integer type of range [lo, hi].
func toSigned[T int8 | int16 | int32 | int64](n int, at func(int) number, lo, hi int64, to string) ([]T, error) {
	out := make([]T, n)
	for i := range out {
		v := at(i)
		switch v.kind {
		case 'i':
			if v.i < lo || v.i > hi {
				return nil, notWhole(i, v, to)
			}
			out[i] = T(v.i)
		case 'u':
			if v.u > uint64(hi) {
				return nil, notWhole(i, v, to)
			}
			out[i] = T(v.u)
		default:
			// [lo, -lo) is the range, both bounds exact in a float64.
			if v.f != math.Trunc(v.f) || v.f < float64(lo) || v.f >= -float64(lo) {
				return nil, notWhole(i, v, to)
			}
			out[i] = T(v.f)
		}
	}
	return out, nil
}

// toUnsigned converts to an unsigned integer type of range [0, hi].
func toUnsigned[T uint8 | uint16 | uint32 | uint64](n int, at func(int) number, hi uint64, to string) ([]T, error) {
	out := make([]T, n)
	for i := range out {
		v := at(i)
		switch v.kind {
		case 'i':
			if v.i < 0 || uint64(v.i) > hi {
				return nil, notWhole(i, v, to)
			}
			out[i] = T(v.i)
		case 'u':
			if v.u > hi {
				return nil, notWhole(i, v, to)
			}
			out[i] = T(v.u)
		default:
			// float64(hi)+1 is 2^bits, exact in a float64.
			if v.f != math.Trunc(v.f) || v.f < 0 || v.f >= float64(hi)+1 {
				return nil, notWhole(i, v, to)
			}
			out[i] = T(v.f)
		}
	}
	return out, nil
}

// toFloats converts to a floating-point type with conv, which reports
// false when a finite value becomes infinite.
func toFloats[T any](n int, at func(int) number, conv func(float64) (T, bool), to string) ([]T, error) {
	out := make([]T, n)
	for i := range out {
		v := at(i)
		f := v.f
		switch v.kind {
		case 'i':
			f = float64(v.i)
		case 'u':
			f = float64(v.u)
		}
		var ok bool
		if out[i], ok = conv(f); !ok {
			return nil, fmt.Errorf("element %d (%v) is out of range for %s", i, v, to)
		}
	}
	return out, nil
}
