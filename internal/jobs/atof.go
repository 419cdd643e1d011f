package jobs

import (
	"math"
	"strconv"
)

// parseFloat is strconv.ParseFloat(s, bits), bits 32 or 64, with a fast
// path for the plain decimals datasets hold ("-0.044641636312007904",
// "151", "2.5e-3"), as parsing the input is most of a job's CPU after the
// model's, and strconv's general digit scanner most of that. The fast
// path reads the digits a uint64 holds and an exponent that leaves a
// power of ten a float64 holds exactly. For bits 64 it takes 53 bits of
// digits at most and makes the float64 of the digits times or divided by
// that power, rounded once (Clinger's fast path, as strconv's own). For
// bits 32 it makes the float64 f of the digits times the power, or times
// the float64 nearest its inverse: three roundings at most, each of at
// most 2^-53 of the value, so f is within 3 ulps of the decimal (6 of the
// ulps of the binade below when they straddle a power of two). The
// float32 nearest f is then the one nearest the decimal unless a float32
// midpoint lies within 16 ulps of f: then, and for any other text,
// strconv decides.
func parseFloat(s string, bits int) (float64, error) {
	if f, ok := fastFloat(s, bits); ok {
		return f, nil
	}
	return strconv.ParseFloat(s, bits)
}

// float64pow10 are the powers of ten a float64 holds exactly.
var float64pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// float64pow10inv are the float64s nearest 1e-0 to 1e-22.
var float64pow10inv = [...]float64{1e-0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10,
	1e-11, 1e-12, 1e-13, 1e-14, 1e-15, 1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22}

func fastFloat(s string, bits int) (float64, bool) {
	i, neg := 0, false
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		neg = s[i] == '-'
		i++
	}
	var mant uint64
	digits, exp := 0, 0 // digits read, the exponent
	for frac := false; ; frac = true {
		for i < len(s) {
			if len(s)-i >= 8 {
				if v := le64(s[i:]); eightDigits(v) {
					if mant > (math.MaxUint64-99999999)/100000000 {
						return 0, false
					}
					mant = mant*100000000 + parseEight(v)
					digits, i = digits+8, i+8
					if frac {
						exp -= 8
					}
					continue
				}
			}
			c := s[i] - '0'
			if c > 9 {
				break
			}
			if mant > (math.MaxUint64-9)/10 {
				return 0, false
			}
			mant = mant*10 + uint64(c)
			digits, i = digits+1, i+1
			if frac {
				exp--
			}
		}
		if frac || i == len(s) || s[i] != '.' {
			break
		}
		i++
	}
	if digits == 0 {
		return 0, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			eneg = s[i] == '-'
			i++
		}
		start, e := i, 0
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			if e = e*10 + int(s[i]-'0'); e > 1000 {
				return 0, false
			}
		}
		if i == start {
			return 0, false
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if i != len(s) {
		return 0, false
	}
	if mant == 0 {
		if neg {
			return math.Copysign(0, -1), true
		}
		return 0, true
	}
	if exp < -22 || exp > 22 || bits == 64 && mant >= 1<<53 {
		return 0, false
	}
	f := float64(mant)
	switch {
	case exp >= 0:
		f *= float64pow10[exp]
	case bits == 64:
		f /= float64pow10[-exp]
	default:
		f *= float64pow10inv[-exp] // a multiplication is a few times faster
	}
	if neg {
		f = -f
	}
	if bits == 64 {
		return f, true
	}
	// A float32 midpoint is a float64 whose low 29 of 52 mantissa bits
	// are 1000...0; it must be farther from f than f may be from the
	// decimal (6 ulps), with a margin.
	const mid, margin = 1 << 28, 16
	if low := math.Float64bits(f) & (1<<29 - 1); low > mid-margin && low < mid+margin {
		return 0, false
	}
	if a := math.Abs(f); a < 0x1p-126 || a > math.MaxFloat32 {
		return 0, false // subnormal or out of range: strconv's rounding
	}
	return float64(float32(f)), true
}

// le64 reads s[:8] as a little-endian uint64.
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// eightDigits reports whether the 8 bytes of v are all ASCII digits.
func eightDigits(v uint64) bool {
	return (v&0xF0F0F0F0F0F0F0F0)|(((v+0x0606060606060606)&0xF0F0F0F0F0F0F0F0)>>4) == 0x3333333333333333
}

// parseEight is the number the 8 digits of v (eightDigits) write.
func parseEight(v uint64) uint64 {
	const mask, mul1, mul2 = 0x000000FF000000FF, 100 + 1000000<<32, 1 + 10000<<32
	v -= 0x3030303030303030
	v = v*10 + v>>8
	return (v&mask*mul1 + (v>>16)&mask*mul2) >> 32
}
