package onnx

import (
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ebb-ml/ebb/internal/oip"
)

func TestConvertData(t *testing.T) {
	tests := []struct {
		name    string
		data    any
		to      string
		want    any
		wantErr string
	}{
		{"same type is not copied", []float32{1}, oip.FP32, []float32{1}, ""},
		{"int64 to float32", []int64{3, -4}, oip.FP32, []float32{3, -4}, ""},
		{"float64 to int32", []float64{7, -8}, oip.INT32, []int32{7, -8}, ""},
		{"fraction to int", []float32{1, 1.5}, oip.INT32, nil, "element 1 (1.5) is not a whole number in range for INT32"},
		{"int32 overflow", []int64{math.MaxInt32 + 1}, oip.INT32, nil, "element 0 (2147483648) is not a whole number in range"},
		{"negative to uint8", []int32{-1}, oip.UINT8, nil, "element 0 (-1) is not a whole number in range for UINT8"},
		{"uint8 range", []float64{0, 255}, oip.UINT8, []uint8{0, 255}, ""},
		{"256 to uint8", []int64{256}, oip.UINT8, nil, "element 0 (256)"},
		{"uint64 to int64", []uint64{math.MaxInt64 + 1}, oip.INT64, nil, "element 0 (9223372036854775808)"},
		{"int8 to uint64", []int8{5}, oip.UINT64, []uint64{5}, ""},
		{"float to fp16", []float32{1.5, -2}, oip.FP16, []oip.Float16{oip.Float16From(1.5), oip.Float16From(-2)}, ""},
		{"too large for fp16", []float32{1e6}, oip.FP16, nil, "element 0 (1e+06) is out of range for FP16"},
		{"infinity stays", []float64{math.Inf(1)}, oip.FP16, []oip.Float16{0x7c00}, ""},
		{"fp16 to int", []oip.Float16{oip.Float16From(3)}, oip.INT16, []int16{3}, ""},
		{"bf16 to fp64", []oip.BFloat16{oip.BFloat16From(0.5)}, oip.FP64, []float64{0.5}, ""},
		{"too large for fp32", []float64{1e300}, oip.FP32, nil, "out of range for FP32"},
		{"NaN to int", []float32{float32(math.NaN())}, oip.INT64, nil, "element 0 (NaN) is not a whole number"},
		{"strings", []string{"1"}, oip.FP32, nil, "cannot be converted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := convertData(tt.data, tt.to)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("convertData error = %v; want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateNaNs()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzConvert converts numbers between every pair of numeric datatypes, as
// Predict does for an input of another type. A conversion succeeds exactly
// when every value fits the target (whole and in range for an integer
// type, not turned infinite for a float type), and to an integer type it
// loses nothing: converting back gives the same values.
func FuzzConvert(f *testing.F) {
	f.Add(uint8(11), uint8(3), []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f})
	f.Add(uint8(12), uint8(4), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xdf, 0x43})
	numeric := []string{}
	for _, dt := range oip.Datatypes {
		if oip.IsNumeric(dt) {
			numeric = append(numeric, dt)
		}
	}
	f.Fuzz(func(t *testing.T, from, to uint8, b []byte) {
		src, dst := numeric[int(from)%len(numeric)], numeric[int(to)%len(numeric)]
		size := oip.ElementSize(src)
		in, err := oip.FromRaw(src, []int64{int64(len(b) / size)}, b[:len(b)/size*size])
		if err != nil {
			t.Fatal(err)
		}
		n, at, _ := numbers(in.Data)
		fits := true
		for i := range n {
			if !representable(at(i), dst) {
				fits = false
			}
		}
		out, err := convertData(in.Data, dst)
		if fits != (err == nil) {
			t.Fatalf("%s %v to %s: error %v, want success %v", src, in.Data, dst, err, fits)
		}
		if err != nil || oip.IsFloat(dst) {
			return
		}
		back, err := convertData(out, src)
		if err != nil {
			t.Fatalf("%s back to %s: %v", dst, src, err)
		}
		_, atBack, _ := numbers(back)
		for i := range n {
			// Compared as numbers: -0 comes back as 0.
			if v, w := at(i), atBack(i); v.String() != w.String() && !(v.String() == "-0" && w.String() == "0") {
				t.Fatalf("%s → %s → %s changed element %d from %v to %v", src, dst, src, i, v, w)
			}
		}
	})
}

// representable reports, with exact arithmetic, whether v fits datatype dt.
func representable(v number, dt string) bool {
	var x big.Float
	switch v.kind {
	case 'i':
		x.SetInt64(v.i)
	case 'u':
		x.SetUint64(v.u)
	default:
		if math.IsNaN(v.f) {
			return oip.IsFloat(dt)
		}
		if math.IsInf(v.f, 0) {
			return oip.IsFloat(dt)
		}
		x.SetFloat64(v.f)
	}
	if oip.IsFloat(dt) {
		f32, _ := x.Float32()
		switch dt {
		case oip.FP64:
			return true
		case oip.FP32:
			return !math.IsInf(float64(f32), 0)
		case oip.FP16:
			return !math.IsInf(float64(oip.Float16From(f32).Float32()), 0)
		default:
			return !math.IsInf(float64(oip.BFloat16From(f32).Float32()), 0)
		}
	}
	if !x.IsInt() {
		return false
	}
	bits := 8 * oip.ElementSize(dt)
	lo, hi := new(big.Float), new(big.Float)
	if strings.HasPrefix(dt, "UINT") {
		hi.SetInt(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(bits)), big.NewInt(1)))
	} else {
		lo.SetInt(new(big.Int).Neg(new(big.Int).Lsh(big.NewInt(1), uint(bits-1))))
		hi.SetInt(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(bits-1)), big.NewInt(1)))
	}
	return x.Cmp(lo) >= 0 && x.Cmp(hi) <= 0
}
