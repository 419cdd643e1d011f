package oip

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// This file is the raw form of tensor data, shared by the binary tensor
// data extension of REST, gRPC's raw_input_contents and raw_output_contents,
// and the channel to Python workers: elements in row-major order, each in
// its datatype's size (ElementSize) in little-endian byte order, without
// padding; a BOOL is one byte, 0 or 1; a BYTES element is its length as a
// 4-byte little-endian unsigned integer followed by its bytes.

// nativeLittleEndian is true on hosts whose memory order is the raw order,
// where numeric data is copied in one move.
var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// RawSize returns the bytes t's data takes in raw form. It fails when
// t.Data is not of a type in the table of datatype.go.
func RawSize(t Tensor) (int, error) {
	if s, ok := t.Data.([]string); ok {
		n := 0
		for _, e := range s {
			n += 4 + len(e)
		}
		return n, nil
	}
	dt, ok := DatatypeOf(t.Data)
	if !ok {
		return 0, fmt.Errorf("%q: data of type %T is not a tensor type", t.Name, t.Data)
	}
	n, _ := DataLen(t.Data)
	return n * ElementSize(dt), nil
}

// RawBytes returns t's data in raw form, after checking it as Tensor.Check
// does.
func RawBytes(t Tensor) ([]byte, error) {
	if err := t.Check(); err != nil {
		return nil, err
	}
	size, _ := RawSize(t)
	return AppendRaw(make([]byte, 0, size), t)
}

// AppendRaw appends t's data in raw form to dst. Unlike RawBytes it does not
// check t's shape, only that Data is of a tensor type.
func AppendRaw(dst []byte, t Tensor) ([]byte, error) {
	switch d := t.Data.(type) {
	case []bool:
		for _, v := range d {
			b := byte(0)
			if v {
				b = 1
			}
			dst = append(dst, b)
		}
		return dst, nil
	case []int8:
		return appendNumbers(dst, d, 1, func(b []byte, v int8) []byte { return append(b, byte(v)) }), nil
	case []uint8:
		return append(dst, d...), nil
	case []int16:
		return appendNumbers(dst, d, 2, func(b []byte, v int16) []byte { return binary.LittleEndian.AppendUint16(b, uint16(v)) }), nil
	case []uint16:
		return appendNumbers(dst, d, 2, binary.LittleEndian.AppendUint16), nil
	case []Float16:
		return appendNumbers(dst, d, 2, func(b []byte, v Float16) []byte { return binary.LittleEndian.AppendUint16(b, uint16(v)) }), nil
	case []BFloat16:
		return appendNumbers(dst, d, 2, func(b []byte, v BFloat16) []byte { return binary.LittleEndian.AppendUint16(b, uint16(v)) }), nil
	case []int32:
		return appendNumbers(dst, d, 4, func(b []byte, v int32) []byte { return binary.LittleEndian.AppendUint32(b, uint32(v)) }), nil
	case []uint32:
		return appendNumbers(dst, d, 4, binary.LittleEndian.AppendUint32), nil
	case []float32:
		return appendNumbers(dst, d, 4, func(b []byte, v float32) []byte { return binary.LittleEndian.AppendUint32(b, math.Float32bits(v)) }), nil
	case []int64:
		return appendNumbers(dst, d, 8, func(b []byte, v int64) []byte { return binary.LittleEndian.AppendUint64(b, uint64(v)) }), nil
	case []uint64:
		return appendNumbers(dst, d, 8, binary.LittleEndian.AppendUint64), nil
	case []float64:
		return appendNumbers(dst, d, 8, func(b []byte, v float64) []byte { return binary.LittleEndian.AppendUint64(b, math.Float64bits(v)) }), nil
	case []string:
		for _, s := range d {
			dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
			dst = append(dst, s...)
		}
		return dst, nil
	}
	return nil, fmt.Errorf("%q: data of type %T is not a tensor type", t.Name, t.Data)
}

// appendNumbers appends d's elements of size bytes each: one copy of
// memory on a little-endian host, put one by one elsewhere.
func appendNumbers[T any](dst []byte, d []T, size int, put func([]byte, T) []byte) []byte {
	if len(d) == 0 {
		return dst
	}
	if nativeLittleEndian {
		return append(dst, unsafe.Slice((*byte)(unsafe.Pointer(&d[0])), len(d)*size)...)
	}
	for _, v := range d {
		dst = put(dst, v)
	}
	return dst
}

// FromRaw returns the tensor of datatype and shape whose data in raw form
// is b, with freshly allocated Data (b is not kept). It checks the length
// of b against the shape before it allocates: a fixed-size datatype must
// fill b exactly, and BYTES elements are counted as they are read, so the
// memory FromRaw takes is bounded by len(b) whatever the shape declares.
// Errors do not name the tensor; callers prefix them.
func FromRaw(datatype string, shape []int64, b []byte) (Tensor, error) {
	t := Tensor{Datatype: datatype, Shape: shape}
	n, err := Elements(shape)
	if err != nil {
		return t, err
	}
	size := ElementSize(datatype)
	switch {
	case size < 0:
		return t, unknownDatatype(datatype)
	case size == 0:
		t.Data, err = rawStrings(n, b)
		return t, err
	case len(b) != n*size:
		return t, fmt.Errorf("%d bytes of data do not fit shape %s of %s: it needs %d bytes (%d elements of %d bytes)", len(b), FormatShape(shape), datatype, n*size, n, size)
	}
	le := binary.LittleEndian
	switch datatype {
	case BOOL:
		d := make([]bool, n)
		for i := range d {
			if b[i] > 1 {
				return t, fmt.Errorf("byte %d is %d, and a BOOL element must be 0 (false) or 1 (true)", i, b[i])
			}
			d[i] = b[i] == 1
		}
		t.Data = d
	case INT8:
		t.Data = fromRaw(b, n, 1, func(b []byte) int8 { return int8(b[0]) })
	case UINT8:
		t.Data = append(make([]uint8, 0, n), b...)
	case INT16:
		t.Data = fromRaw(b, n, 2, func(b []byte) int16 { return int16(le.Uint16(b)) })
	case UINT16:
		t.Data = fromRaw(b, n, 2, le.Uint16)
	case FP16:
		t.Data = fromRaw(b, n, 2, func(b []byte) Float16 { return Float16(le.Uint16(b)) })
	case BF16:
		t.Data = fromRaw(b, n, 2, func(b []byte) BFloat16 { return BFloat16(le.Uint16(b)) })
	case INT32:
		t.Data = fromRaw(b, n, 4, func(b []byte) int32 { return int32(le.Uint32(b)) })
	case UINT32:
		t.Data = fromRaw(b, n, 4, le.Uint32)
	case FP32:
		t.Data = fromRaw(b, n, 4, func(b []byte) float32 { return math.Float32frombits(le.Uint32(b)) })
	case INT64:
		t.Data = fromRaw(b, n, 8, func(b []byte) int64 { return int64(le.Uint64(b)) })
	case UINT64:
		t.Data = fromRaw(b, n, 8, le.Uint64)
	case FP64:
		t.Data = fromRaw(b, n, 8, func(b []byte) float64 { return math.Float64frombits(le.Uint64(b)) })
	}
	return t, nil
}

// fromRaw decodes n elements of size bytes each from b, which holds
// exactly that many.
func fromRaw[T any](b []byte, n, size int, get func([]byte) T) []T {
	d := make([]T, n)
	if n == 0 {
		return d
	}
	if nativeLittleEndian {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&d[0])), n*size), b)
		return d
	}
	for i := range d {
		d[i] = get(b[i*size:])
	}
	return d
}

// rawStrings reads n length-prefixed BYTES elements that fill b exactly.
func rawStrings(n int, b []byte) ([]string, error) {
	out := make([]string, 0, min(n, len(b)/4))
	rest := b
	for len(rest) > 0 {
		if len(rest) < 4 {
			return nil, fmt.Errorf("the data ends in the middle of the 4-byte length of BYTES element %d", len(out))
		}
		l := binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(l) > uint64(len(rest)) {
			return nil, fmt.Errorf("BYTES element %d claims %d bytes but only %d remain", len(out), l, len(rest))
		}
		if len(out) == n {
			return nil, fmt.Errorf("the data holds more than the %d BYTES elements of its shape", n)
		}
		out = append(out, string(rest[:l]))
		rest = rest[l:]
	}
	if len(out) != n {
		return nil, fmt.Errorf("the data holds %d BYTES elements but the shape describes %d", len(out), n)
	}
	return out, nil
}
