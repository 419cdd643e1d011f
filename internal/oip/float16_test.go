package oip

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestFloat16Values(t *testing.T) {
	tests := []struct {
		f    float32
		want Float16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.5, 0x3800},
		{65504, 0x7bff},                  // largest finite
		{65519, 0x7bff},                  // just below the midpoint to infinity
		{65520, 0x7c00},                  // the midpoint rounds to even: infinity
		{1 << 20, 0x7c00},                // overflow
		{6.103515625e-05, 0x0400},        // smallest normal, 2^-14
		{5.960464477539063e-08, 0x0001},  // smallest subnormal, 2^-24
		{2.9802322387695312e-08, 0x0000}, // 2^-25, half of it: ties to even (0)
		{4.470348358154297e-08, 0x0001},  // 1.5 × 2^-25 rounds up
		{8.940696716308594e-08, 0x0002},  // 1.5 × 2^-24: tie, to even (2)
		{1e-10, 0x0000},
		{1.0009765625, 0x3c01},  // 1 + 2^-10
		{1.00048828125, 0x3c00}, // 1 + 2^-11: tie, to even (down)
		{1.00146484375, 0x3c02}, // 1 + 3·2^-11: tie, to even (up)
		{float32(math.Inf(1)), 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
		{0.1, 0x2e66},
	}
	for _, tt := range tests {
		if got := Float16From(tt.f); got != tt.want {
			t.Errorf("Float16From(%g) = %#04x, want %#04x", tt.f, uint16(got), uint16(tt.want))
		}
	}
	if h := Float16From(float32(math.NaN())); !math.IsNaN(float64(h.Float32())) {
		t.Errorf("Float16From(NaN) = %#04x, not a NaN", uint16(h))
	}
}

// TestFloat16RoundTrip converts every FP16 bit pattern to float32 and back.
func TestFloat16RoundTrip(t *testing.T) {
	for i := range 1 << 16 {
		h := Float16(i)
		f := h.Float32()
		if h&0x7c00 == 0x7c00 && h&0x3ff != 0 {
			if !math.IsNaN(float64(f)) || !math.IsNaN(float64(Float16From(f).Float32())) {
				t.Fatalf("NaN %#04x became %v", i, f)
			}
			continue
		}
		if back := Float16From(f); back != h {
			t.Fatalf("Float16(%#04x).Float32() = %g, which rounds back to %#04x", i, f, uint16(back))
		}
	}
}

// TestFloat16Nearest checks Float16From against the nearest FP16 value
// found by search among all of them, for random float32s of every
// magnitude in FP16's range.
func TestFloat16Nearest(t *testing.T) {
	var values [0x7c00]float64 // every finite non-negative FP16, ascending
	for i := range values {
		values[i] = float64(Float16(i).Float32())
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		f := math.Float32frombits(r.Uint32() & 0x7fffffff)
		if f > 70000 || math.IsNaN(float64(f)) {
			f = float32(r.Float64() * 70000)
		}
		want := nearest(values[:], float64(f), 65520)
		if got := Float16From(f); got != Float16(want) {
			t.Fatalf("Float16From(%g) = %#04x, the nearest FP16 is %#04x", f, uint16(got), want)
		}
		if got := Float16From(-f); got != Float16(want|0x8000) {
			t.Fatalf("Float16From(%g) = %#04x, want %#04x", -f, uint16(got), want|0x8000)
		}
	}
}

// nearest returns the index of the value closest to f in the ascending
// values (ties to the even index), or the index past the end (infinity)
// from overflow on.
func nearest(values []float64, f, overflow float64) uint16 {
	if f >= overflow {
		return uint16(len(values))
	}
	lo, hi := 0, len(values)-1
	for lo < hi { // last index with values[i] <= f
		mid := (lo + hi + 1) / 2
		if values[mid] <= f {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	if lo == len(values)-1 {
		return uint16(lo)
	}
	below, above := f-values[lo], values[lo+1]-f
	switch {
	case below < above:
		return uint16(lo)
	case above < below:
		return uint16(lo + 1)
	case lo%2 == 0:
		return uint16(lo)
	}
	return uint16(lo + 1)
}

func TestBFloat16(t *testing.T) {
	tests := []struct {
		f    float32
		want BFloat16
	}{
		{0, 0},
		{1, 0x3f80},
		{-1, 0xbf80},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie, to even (down)
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie, to even (up)
		{math.Float32frombits(0x3f808001), 0x3f81},
		{math.MaxFloat32, 0x7f80}, // rounds past the largest finite BF16
		{float32(math.Inf(-1)), 0xff80},
	}
	for _, tt := range tests {
		if got := BFloat16From(tt.f); got != tt.want {
			t.Errorf("BFloat16From(%g) = %#04x, want %#04x", tt.f, uint16(got), uint16(tt.want))
		}
	}
	if v := BFloat16From(float32(math.NaN())); !math.IsNaN(float64(v.Float32())) {
		t.Errorf("BFloat16From(NaN) = %#04x, not a NaN", uint16(v))
	}
	for i := range 1 << 16 {
		v := BFloat16(i)
		if f := v.Float32(); !math.IsNaN(float64(f)) && BFloat16From(f) != v {
			t.Fatalf("BFloat16(%#04x) does not round-trip through %g", i, f)
		}
	}
}

func TestHalfJSON(t *testing.T) {
	tests := []struct {
		h    Float16
		want string
	}{
		{Float16From(0.1), "0.1"},
		{Float16From(1), "1"},
		{Float16From(-2.5), "-2.5"},
		{Float16From(65504), "65500"}, // the shortest that reads back as 65504, as numpy writes it
		{Float16(0x0001), "6e-8"},
		{Float16(0x7c00), "Infinity"},
		{Float16(0xfc00), "-Infinity"},
		{Float16(0x7e00), "NaN"},
	}
	for _, tt := range tests {
		got, err := tt.h.MarshalJSON()
		if err != nil || string(got) != tt.want {
			t.Errorf("Float16(%#04x).MarshalJSON() = %s, %v; want %s", uint16(tt.h), got, err, tt.want)
		}
		var back Float16
		if err := back.UnmarshalJSON([]byte(`"` + string(got) + `"`)); tt.h&0x7c00 == 0x7c00 && (err != nil || back&0x7c00 != 0x7c00) {
			t.Errorf("UnmarshalJSON of the quoted %s = %#04x, %v", got, uint16(back), err)
		}
		if tt.h&0x7c00 != 0x7c00 {
			if err := back.UnmarshalJSON(got); err != nil || back != tt.h {
				t.Errorf("UnmarshalJSON(%s) = %#04x, %v; want %#04x", got, uint16(back), err, uint16(tt.h))
			}
		}
	}
	b, err := BFloat16From(3.140625).MarshalJSON()
	if err != nil || string(b) != "3.14" {
		t.Errorf("BFloat16(3.140625).MarshalJSON() = %s, %v; want 3.14", b, err)
	}
	var h Float16
	if err := h.UnmarshalJSON([]byte("70000")); err == nil {
		t.Errorf("Float16.UnmarshalJSON(70000) = %#04x; want an out-of-range error", uint16(h))
	}
}
