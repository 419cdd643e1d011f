package oipgrpc

import (
	"fmt"
	"math"
	"strings"

	"github.com/ebb-ml/ebb/internal/oip"
)

// This file maps datatypes to the typed fields of InferTensorContents, as
// the protocol's grpc_predict_v2.proto assigns them:
//
//	BOOL                   bool_contents
//	INT8, INT16, INT32     int_contents (int32 each)
//	INT64                  int64_contents
//	UINT8, UINT16, UINT32  uint_contents (uint32 each)
//	UINT64                 uint64_contents
//	FP32                   fp32_contents
//	FP64                   fp64_contents
//	BYTES                  bytes_contents
//	FP16, BF16             none: raw contents only

var datatypeList = strings.Join(oip.Datatypes, ", ")

// contentsField is the InferTensorContents field that carries dt, or ""
// when dt has none.
func contentsField(dt string) string {
	switch dt {
	case oip.BOOL:
		return "bool_contents"
	case oip.INT8, oip.INT16, oip.INT32:
		return "int_contents"
	case oip.INT64:
		return "int64_contents"
	case oip.UINT8, oip.UINT16, oip.UINT32:
		return "uint_contents"
	case oip.UINT64:
		return "uint64_contents"
	case oip.FP32:
		return "fp32_contents"
	case oip.FP64:
		return "fp64_contents"
	case oip.BYTES:
		return "bytes_contents"
	}
	return ""
}

// setFields lists the non-empty fields of c.
func setFields(c *InferTensorContents) []string {
	var set []string
	for _, f := range []struct {
		name string
		n    int
	}{
		{"bool_contents", len(c.GetBoolContents())},
		{"int_contents", len(c.GetIntContents())},
		{"int64_contents", len(c.GetInt64Contents())},
		{"uint_contents", len(c.GetUintContents())},
		{"uint64_contents", len(c.GetUint64Contents())},
		{"fp32_contents", len(c.GetFp32Contents())},
		{"fp64_contents", len(c.GetFp64Contents())},
		{"bytes_contents", len(c.GetBytesContents())},
	} {
		if f.n > 0 {
			set = append(set, f.name)
		}
	}
	return set
}

// decodeContents reads a tensor from its typed contents; rawField names the
// raw alternative for error messages.
func decodeContents(kind, name, dt string, shape []int64, c *InferTensorContents, rawField string) (oip.Tensor, error) {
	t := oip.Tensor{Name: name, Datatype: dt, Shape: shape}
	n, err := checkHeader(kind, name, dt, shape)
	if err != nil {
		return t, err
	}
	field := contentsField(dt)
	if field == "" {
		return t, invalid("%s %q: datatype %s has no typed field in InferTensorContents: send its data in %s (%d bytes per element, little-endian)", kind, name, dt, rawField, oip.ElementSize(dt))
	}
	for _, f := range setFields(c) {
		if f != field {
			return t, invalid("%s %q: datatype %s takes its data in contents.%s, but contents.%s is set", kind, name, dt, field, f)
		}
	}
	var got int
	switch dt {
	case oip.BOOL:
		got, t.Data = len(c.GetBoolContents()), nonNil(c.GetBoolContents())
	case oip.INT32:
		got, t.Data = len(c.GetIntContents()), nonNil(c.GetIntContents())
	case oip.INT64:
		got, t.Data = len(c.GetInt64Contents()), nonNil(c.GetInt64Contents())
	case oip.UINT32:
		got, t.Data = len(c.GetUintContents()), nonNil(c.GetUintContents())
	case oip.UINT64:
		got, t.Data = len(c.GetUint64Contents()), nonNil(c.GetUint64Contents())
	case oip.FP32:
		got, t.Data = len(c.GetFp32Contents()), nonNil(c.GetFp32Contents())
	case oip.FP64:
		got, t.Data = len(c.GetFp64Contents()), nonNil(c.GetFp64Contents())
	case oip.INT8, oip.INT16, oip.UINT8, oip.UINT16:
		got = len(c.GetIntContents()) + len(c.GetUintContents())
	case oip.BYTES:
		got = len(c.GetBytesContents())
	}
	if got != n {
		if got == 0 && c == nil {
			return t, invalid("%s %q has no data: shape %s holds %d elements; send them in contents.%s or %s", kind, name, oip.FormatShape(shape), n, field, rawField)
		}
		return t, invalid("%s %q: shape %s holds %d elements but contents.%s has %d", kind, name, oip.FormatShape(shape), n, field, got)
	}
	switch dt {
	case oip.INT8:
		t.Data, err = narrow[int32, int8](c.GetIntContents(), math.MinInt8, math.MaxInt8)
	case oip.INT16:
		t.Data, err = narrow[int32, int16](c.GetIntContents(), math.MinInt16, math.MaxInt16)
	case oip.UINT8:
		t.Data, err = narrow[uint32, uint8](c.GetUintContents(), 0, math.MaxUint8)
	case oip.UINT16:
		t.Data, err = narrow[uint32, uint16](c.GetUintContents(), 0, math.MaxUint16)
	case oip.BYTES:
		b := c.GetBytesContents()
		s := make([]string, len(b))
		for i, e := range b {
			s[i] = string(e)
		}
		t.Data = s
	}
	if err != nil {
		return t, invalid("%s %q: contents.%s %v, out of range for %s", kind, name, field, err, dt)
	}
	return t, nil
}

// rangeError names the first element out of range.
type rangeError struct {
	index int
	value int64
}

func (e *rangeError) Error() string {
	return fmt.Sprintf("element %d is %d", e.index, e.value)
}

// narrow converts the wide elements of a typed field to the datatype's own
// type, refusing any outside [lo, hi].
func narrow[From int32 | uint32, To int8 | int16 | uint8 | uint16](in []From, lo, hi int64) ([]To, error) {
	out := make([]To, len(in))
	for i, v := range in {
		if int64(v) < lo || int64(v) > hi {
			return nil, &rangeError{i, int64(v)}
		}
		out[i] = To(v)
	}
	return out, nil
}

// widen converts a narrow datatype's elements to its typed field's type.
func widen[From int8 | int16 | uint8 | uint16, To int32 | uint32](in []From) []To {
	out := make([]To, len(in))
	for i, v := range in {
		out[i] = To(v)
	}
	return out
}

// nonNil returns s, or an empty slice for nil, so Data always has its type.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// encodeContents puts t's data in its typed contents field, sharing
// slices of the field's own type. Datatypes without a typed field (FP16,
// BF16) are refused; SetInputs and SetOutputs send those raw.
func encodeContents(kind string, t oip.Tensor) (*InferTensorContents, error) {
	if err := checkTensor(kind, t); err != nil {
		return nil, err
	}
	c := &InferTensorContents{}
	switch d := t.Data.(type) {
	case []bool:
		c.BoolContents = d
	case []int8:
		c.IntContents = widen[int8, int32](d)
	case []int16:
		c.IntContents = widen[int16, int32](d)
	case []int32:
		c.IntContents = d
	case []int64:
		c.Int64Contents = d
	case []uint8:
		c.UintContents = widen[uint8, uint32](d)
	case []uint16:
		c.UintContents = widen[uint16, uint32](d)
	case []uint32:
		c.UintContents = d
	case []uint64:
		c.Uint64Contents = d
	case []float32:
		c.Fp32Contents = d
	case []float64:
		c.Fp64Contents = d
	case []string:
		c.BytesContents = make([][]byte, len(d))
		for i, s := range d {
			c.BytesContents[i] = []byte(s)
		}
	default:
		return nil, invalid("%s %q: datatype %s has no typed field in InferTensorContents: send it raw", kind, t.Name, t.Datatype)
	}
	return c, nil
}
