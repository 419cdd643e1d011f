package jobs

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// checkParseFloat fails unless parseFloat(s, bits) is what
// strconv.ParseFloat(s, bits) returns, to the bit (the sign of zero
// included), or both fail.
func checkParseFloat(t *testing.T, s string, bits int) {
	t.Helper()
	want, werr := strconv.ParseFloat(s, bits)
	got, err := parseFloat(s, bits)
	if (err != nil) != (werr != nil) || math.Float64bits(got) != math.Float64bits(want) {
		t.Fatalf("parseFloat(%q, %d) = %v (%x), %v; strconv: %v (%x), %v", s, bits, got, math.Float64bits(got), err, want, math.Float64bits(want), werr)
	}
}

func TestParseFloat(t *testing.T) {
	for _, tt := range []struct {
		s    string
		fast bool // taken by the fast path, for bits 32
	}{
		{"0", true}, {"-0", true}, {"+0.000", true}, {"0e5", true},
		{"151", true}, {"-151.25", true}, {"+2.5e-3", true}, {"1E+5", true}, {".5", true}, {"5.", true},
		{"0.04534098505973816", true}, {"-0.044641636312007904", true}, {"0.0007788080256432295", true},
		{"00012", true}, {"1.5e22", true}, {"1e-22", true},
		{"1e23", false}, {"1e-23", false}, // no exact power of ten
		{"123456789012345678901", false},     // more digits than a uint64 holds
		{"1.00000000000000000000", false},    // trailing zeros count
		{"3.4028235e38", false},              // float32's largest: out of the fast range
		{"1e-40", false}, {"1.4e-45", false}, // subnormal float32
		{"0x1p-2", false}, {"1_000", false}, // strconv's other syntaxes
		{"inf", false}, {"-Inf", false}, {"NaN", false},
		{"", false}, {".", false}, {"-", false}, {"e5", false}, {"5e", false}, {"5e+", false}, {"1.2.3", false},
		{"1e1001", false}, {"--1", false}, {"1 ", false}, {"12a", false},
	} {
		if _, ok := fastFloat(tt.s, 32); ok != tt.fast {
			t.Errorf("fastFloat(%q, 32) took the fast path: %v; want %v", tt.s, ok, tt.fast)
		}
		checkParseFloat(t, tt.s, 32)
		checkParseFloat(t, tt.s, 64)
	}
}

// TestParseFloatRandom compares parseFloat with strconv on numbers
// written as datasets write them, on random digits, and on decimals near
// the midpoints between float32s, where a float64 rounded again to
// float32 may round the wrong way.
func TestParseFloatRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 20_000
	if testing.Short() {
		n = 5_000
	}
	var fast int
	check := func(s string) {
		if _, ok := fastFloat(s, 32); ok {
			fast++
		}
		checkParseFloat(t, s, 32)
		checkParseFloat(t, s, 64)
	}
	for range n {
		f := rng.NormFloat64() * math.Pow(10, float64(rng.IntN(16)-8))
		check(strconv.FormatFloat(f, 'g', -1, 64))
		check(strconv.FormatFloat(f, 'g', -1, 32))
		check(strconv.FormatFloat(f, 'e', rng.IntN(20), 64))
		check(strconv.FormatFloat(f, 'f', rng.IntN(20), 64))

		var b strings.Builder
		if rng.IntN(2) == 0 {
			b.WriteByte('-')
		}
		digits, dot := 1+rng.IntN(20), rng.IntN(22)
		for k := range digits {
			if k == dot {
				b.WriteByte('.')
			}
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		if rng.IntN(3) == 0 {
			b.WriteString("e" + strconv.Itoa(rng.IntN(61)-30))
		}
		check(b.String())

		// A decimal at or near the midpoint of two float32s.
		lo := float32(math.Abs(f))
		if lo == 0 || math.IsInf(float64(lo), 0) {
			continue
		}
		mid := (float64(lo) + float64(math.Nextafter32(lo, float32(math.Inf(1))))) / 2
		for _, prec := range []int{8, 12, 15, 16, 17, 18} {
			s := strconv.FormatFloat(mid, 'e', prec, 64)
			check(s)
			m, e, _ := strings.Cut(s, "e")
			last := m[len(m)-1]
			for _, d := range []byte{'0', '9', last - 1, last + 1} {
				if d >= '0' && d <= '9' {
					check(m[:len(m)-1] + string(d) + "e" + e)
				}
			}
		}
	}
	if fast < n {
		t.Errorf("the fast path took %d numbers of %d; want most", fast, 10*n)
	}
}

// BenchmarkParseFloat parses the diabetes dataset's numbers as a job
// reads them into FP32 tensors.
func BenchmarkParseFloat(b *testing.B) {
	nums := []string{"0.04534098505973816", "-0.044641636312007904", "-0.006205954123288393", "0.12501870095729828",
		"0.0007788080256432295", "-0.0394933819770813", "0.0642936", "-1.51778", "151", "2.5e-3"}
	for _, tt := range []struct {
		name  string
		parse func(string, int) (float64, error)
	}{{"strconv", strconv.ParseFloat}, {"parseFloat", parseFloat}} {
		b.Run(tt.name, func(b *testing.B) {
			for i := range b.N {
				if _, err := tt.parse(nums[i%len(nums)], 32); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
