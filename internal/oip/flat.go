package oip

import (
	"math"
	"strconv"
	"unsafe"
)

// This file is Decode's fast path: a flat JSON array of numbers (or
// booleans) parsed straight into the typed slice, without encoding/json's
// reflection. Anything it does not handle, or handles but refuses, goes to
// the element-by-element path, which explains the problem; so every
// function here only reports whether it succeeded.

// parseFlat parses d, a JSON array starting with '[', of exactly want
// elements with parse. Memory is bounded by the bytes of d, not by want.
func parseFlat[T any](d []byte, want int, parse func([]byte) (T, bool)) ([]T, bool) {
	if want > maxElementsIn(d) {
		return nil, false
	}
	out := make([]T, 0, want)
	i := skipSpace(d, 1)
	if i < len(d) && d[i] == ']' {
		return out, want == 0 && skipSpace(d, i+1) == len(d)
	}
	for {
		i = skipSpace(d, i)
		start := i
		for i < len(d) && d[i] != ',' && d[i] != ']' && !isSpace(d[i]) {
			i++
		}
		if len(out) == want {
			return nil, false
		}
		v, ok := parse(d[start:i])
		if !ok {
			return nil, false
		}
		out = append(out, v)
		i = skipSpace(d, i)
		if i >= len(d) {
			return nil, false
		}
		if d[i] == ']' {
			break
		}
		if d[i] != ',' {
			return nil, false
		}
		i++
	}
	return out, len(out) == want && skipSpace(d, i+1) == len(d)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(d []byte, i int) int {
	for i < len(d) && isSpace(d[i]) {
		i++
	}
	return i
}

// jsonInteger reports whether b is a JSON number without fraction or
// exponent.
func jsonInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 || (b[0] == '0' && len(b) > 1) {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// jsonNumber reports whether b is a number as JSON spells it.
func jsonNumber(b []byte) bool { return numberEnd(b, 0) == len(b) }

// numberEnd returns where the number JSON spells from b[i] ends, or -1
// when no number starts there.
func numberEnd(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i == len(b) || b[i] < '0' || b[i] > '9' {
			return -1
		}
		i = digits(b, i)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) || b[i] < '0' || b[i] > '9' {
			return -1
		}
		i = digits(b, i)
	}
	return i
}

// digits returns where the decimal digits from b[i] end.
func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// str views b as a string without copying, for strconv, which keeps
// nothing of it once it returns successfully.
func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func parseFloat64(b []byte) (float64, bool) {
	if !jsonNumber(b) {
		return 0, false
	}
	f, err := strconv.ParseFloat(str(b), 64)
	return f, err == nil
}

func parseFloat32(b []byte) (float32, bool) {
	if !jsonNumber(b) {
		return 0, false
	}
	f, err := strconv.ParseFloat(str(b), 32)
	return float32(f), err == nil
}

// signedParser parses JSON integers in [lo, hi] into T.
func signedParser[T int8 | int16 | int32 | int64](lo, hi int64) func([]byte) (T, bool) {
	return func(b []byte) (T, bool) {
		if !jsonInteger(b) {
			return 0, false
		}
		v, err := strconv.ParseInt(str(b), 10, 64)
		return T(v), err == nil && v >= lo && v <= hi
	}
}

// unsignedParser parses JSON integers in [0, hi] into T.
func unsignedParser[T uint8 | uint16 | uint32 | uint64](hi uint64) func([]byte) (T, bool) {
	return func(b []byte) (T, bool) {
		if !jsonInteger(b) {
			return 0, false
		}
		v, err := strconv.ParseUint(str(b), 10, 64)
		return T(v), err == nil && v <= hi
	}
}

func parseBool(b []byte) (bool, bool) {
	switch string(b) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// halfParser parses numbers into FP16 or BF16, refusing finite ones the
// datatype cannot hold.
func halfParser[H Float16 | BFloat16](datatype string) func([]byte) (H, bool) {
	return func(b []byte) (H, bool) {
		f, ok := parseFloat32(b)
		if !ok {
			return 0, false
		}
		h, ok := halfFrom(float64(f), datatype)
		return H(h), ok
	}
}

var (
	parseInt8   = signedParser[int8](math.MinInt8, math.MaxInt8)
	parseInt16  = signedParser[int16](math.MinInt16, math.MaxInt16)
	parseInt32  = signedParser[int32](math.MinInt32, math.MaxInt32)
	parseInt64  = signedParser[int64](math.MinInt64, math.MaxInt64)
	parseUint8  = unsignedParser[uint8](math.MaxUint8)
	parseUint16 = unsignedParser[uint16](math.MaxUint16)
	parseUint32 = unsignedParser[uint32](math.MaxUint32)
	parseUint64 = unsignedParser[uint64](math.MaxUint64)
	parseFP16   = halfParser[Float16](FP16)
	parseBF16   = halfParser[BFloat16](BF16)
)

// flat wraps parseFlat's result as Data.
func flat[T any](d []byte, want int, parse func([]byte) (T, bool)) (any, bool) {
	out, ok := parseFlat(d, want, parse)
	if !ok {
		return nil, false
	}
	return out, true
}
