package oip

import (
	"math"
	"strconv"
)

// Float16 is one FP16 element: the bits of an IEEE 754 binary16 number (1
// sign bit, 5 exponent bits, 10 fraction bits), as they travel in raw
// tensor data. Go has no half-precision arithmetic; convert with
// Float16From and Float32.
type Float16 uint16

// BFloat16 is one BF16 element: the upper 16 bits of a float32 (1 sign bit,
// 8 exponent bits, 7 fraction bits). Convert with BFloat16From and Float32.
type BFloat16 uint16

// Float16From rounds f to the nearest Float16 (ties to even), as IEEE 754
// and numpy's float16 do: magnitudes past 65504 become infinite, those
// below 2^-25 become zero, NaN stays NaN.
func Float16From(f float32) Float16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	frac := b & 0x7fffff
	switch {
	case exp == 0xff && frac != 0: // NaN: keep it quiet and its payload's top bits
		return Float16(sign | 0x7e00 | uint16(frac>>13))
	case exp == 0xff:
		return Float16(sign | 0x7c00)
	case exp == 0: // zero, or a float32 subnormal, far below FP16's range
		return Float16(sign)
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return Float16(sign | 0x7c00)
	}
	if e <= 0 {
		// A subnormal half: m × 2^-24 with m < 1024.
		full := frac | 0x800000
		shift := uint(14 - e)
		if shift > 24 {
			return Float16(sign)
		}
		m := full >> shift
		rest := full & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rest > half || (rest == half && m&1 == 1) {
			m++ // may carry into the smallest normal, whose bits follow on
		}
		return Float16(sign | uint16(m))
	}
	h := uint16(e)<<10 | uint16(frac>>13)
	rest := frac & 0x1fff
	if rest > 0x1000 || (rest == 0x1000 && h&1 == 1) {
		h++ // may carry into the exponent, up to infinity
	}
	return Float16(sign | h)
}

// Float32 returns h as a float32, exactly.
func (h Float16) Float32() float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h & 0x3ff)
	switch exp {
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | frac<<13)
	case 0:
		f := float32(frac) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
}

// BFloat16From rounds f to the nearest BFloat16 (ties to even); NaN stays
// NaN.
func BFloat16From(f float32) BFloat16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return BFloat16(b>>16 | 0x40)
	}
	return BFloat16((b + 0x7fff + (b>>16)&1) >> 16)
}

// Float32 returns v as a float32, exactly.
func (v BFloat16) Float32() float32 { return math.Float32frombits(uint32(v) << 16) }

// MarshalJSON writes h as a JSON number (NaN and infinities as the tokens
// AppendResponse writes; see there).
func (h Float16) MarshalJSON() ([]byte, error) { return appendFloat16(nil, h), nil }

// UnmarshalJSON reads a JSON number, or one of the special values Decode
// accepts, into h.
func (h *Float16) UnmarshalJSON(b []byte) error {
	f, err := parseFloatElement(b, 32)
	if err != nil {
		return err
	}
	v, ok := halfFrom(f, FP16)
	if !ok {
		return errOutOfRange
	}
	*h = Float16(v)
	return nil
}

// MarshalJSON writes v as a JSON number, as Float16's does.
func (v BFloat16) MarshalJSON() ([]byte, error) { return appendBFloat16(nil, v), nil }

// UnmarshalJSON reads a JSON number, or one of the special values Decode
// accepts, into v.
func (v *BFloat16) UnmarshalJSON(b []byte) error {
	f, err := parseFloatElement(b, 32)
	if err != nil {
		return err
	}
	r, ok := halfFrom(f, BF16)
	if !ok {
		return errOutOfRange
	}
	*v = BFloat16(r)
	return nil
}

// halfFrom rounds f to datatype FP16 or BF16 and returns the bits; false
// when a finite f is too large and would become infinite.
func halfFrom(f float64, datatype string) (uint16, bool) {
	f32 := float32(f)
	if math.IsInf(float64(f32), 0) && !math.IsInf(f, 0) {
		return 0, false
	}
	if datatype == FP16 {
		h := Float16From(f32)
		return uint16(h), !(h&0x7fff == 0x7c00 && !math.IsInf(f, 0))
	}
	v := BFloat16From(f32)
	return uint16(v), !(v&0x7fff == 0x7f80 && !math.IsInf(f, 0))
}

// appendFloat16 writes h in the fewest digits that read back as h.
func appendFloat16(b []byte, h Float16) []byte {
	f := h.Float32()
	if special, ok := specialFloat(float64(f)); ok {
		return append(b, special...)
	}
	return appendShortest(b, f, func(g float32) bool { return Float16From(g) == h })
}

// appendBFloat16 writes v in the fewest digits that read back as v.
func appendBFloat16(b []byte, v BFloat16) []byte {
	f := v.Float32()
	if special, ok := specialFloat(float64(f)); ok {
		return append(b, special...)
	}
	return appendShortest(b, f, func(g float32) bool { return BFloat16From(g) == v })
}

// appendShortest writes the finite f with the fewest significant digits
// for which same reports that the value read back is the one meant (as
// numpy prints float16(65504) as 65500); it falls back to f's float32
// digits.
func appendShortest(b []byte, f float32, same func(float32) bool) []byte {
	var digits []byte
	for prec := 1; prec <= 5; prec++ {
		digits = strconv.AppendFloat(digits[:0], float64(f), 'g', prec, 32)
		if g, err := strconv.ParseFloat(string(digits), 64); err == nil && same(float32(g)) {
			return appendFloat(b, g, 64) // as JSON writes it: 65500, not 6.55e+04
		}
	}
	return appendFloat(b, float64(f), 32)
}
