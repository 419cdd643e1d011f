package oip

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseFlat(t *testing.T) {
	tests := []struct {
		datatype string
		data     string
		want     any // nil: the fast path declines
	}{
		{FP32, `[1, -2.5e3 ,0.125]`, []float32{1, -2500, 0.125}},
		{FP32, ` [ ] `, []float32{}},
		{FP64, `[1e308,-0,5E-1]`, []float64{1e308, 0, 0.5}},
		{INT8, `[-128,127,0]`, []int8{-128, 127, 0}},
		{UINT64, `[18446744073709551615,0,1]`, []uint64{1<<64 - 1, 0, 1}},
		{BOOL, `[true,false,true]`, []bool{true, false, true}},
		{FP32, `[1,2]`, nil},          // too few
		{FP32, `[1,2,3,4]`, nil},      // too many
		{FP32, `[01,2,3]`, nil},       // not JSON
		{FP32, `[1.,2,3]`, nil},       // not JSON
		{FP32, `[.5,2,3]`, nil},       // not JSON
		{FP32, `[+1,2,3]`, nil},       // not JSON
		{FP32, `[0x10,2,3]`, nil},     // not JSON
		{FP32, `[Inf,2,3]`, nil},      // a token the slow path reads
		{FP32, `[1e39,2,3]`, nil},     // out of range
		{FP32, `[1,2,3]x`, nil},       // trailing bytes
		{FP32, `[1,2,,3]`, nil},       // empty element
		{FP32, `[1,2,3,]`, nil},       // trailing comma
		{FP32, `[1 2,3]`, nil},        // missing comma
		{INT8, `[128,0,0]`, nil},      // out of range
		{INT32, `[1.0,2,3]`, nil},     // a fraction for an integer
		{INT32, `[1e2,2,3]`, nil},     // an exponent for an integer
		{UINT8, `[-1,0,0]`, nil},      // negative
		{FP16, `[70000,0,0]`, nil},    // out of range for FP16
		{BOOL, `[true,1,false]`, nil}, // not a boolean
		{FP32, `[null,1,2]`, nil},     // null is the slow path's
		{FP32, `[[1],2,3]`, nil},      // nested
	}
	for _, tt := range tests {
		n := 3
		if tt.data == ` [ ] ` {
			n = 0
		}
		got, ok := decodeFlat(tt.datatype, json.RawMessage(tt.data), n)
		if tt.want == nil {
			if ok {
				t.Errorf("%s %s: fast path took it as %v", tt.datatype, tt.data, got)
			}
			continue
		}
		if !ok {
			t.Errorf("%s %s: fast path declined", tt.datatype, tt.data)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s %s (-want +got):\n%s", tt.datatype, tt.data, diff)
		}
	}
}

// FuzzParseFlat: whatever the fast path accepts, encoding/json reads as
// the same values (so the fast path never accepts what JSON does not
// say).
func FuzzParseFlat(f *testing.F) {
	f.Add([]byte(`[1,-2.5,3e2]`), uint8(0), uint8(3))
	f.Add([]byte(`[255, 0]`), uint8(5), uint8(2))
	f.Fuzz(func(t *testing.T, d []byte, dt uint8, n uint8) {
		datatype := Datatypes[int(dt)%len(Datatypes)]
		got, ok := decodeFlat(datatype, d, int(n))
		if !ok {
			return
		}
		var want any
		var err error
		switch datatype {
		case FP16, BF16:
			var fs []float32
			err = json.Unmarshal(d, &fs)
			want = fs
			g, _ := Tensor{Data: got}.Float32s()
			got = g
		default:
			want, err = jsonSlice(datatype, d)
		}
		if err != nil {
			t.Fatalf("the fast path read %s as %v %s, encoding/json refuses it: %v", d, got, datatype, err)
		}
		if datatype == FP16 || datatype == BF16 {
			// Rounded to half precision: compare after rounding.
			fs := want.([]float32)
			for i := range fs {
				h, _ := halfFrom(float64(fs[i]), datatype)
				if datatype == FP16 {
					fs[i] = Float16(h).Float32()
				} else {
					fs[i] = BFloat16(h).Float32()
				}
			}
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("%s as %s (-encoding/json +fast path):\n%s", d, datatype, diff)
		}
	})
}

// jsonSlice is encoding/json's reading of d as datatype's Go slice.
func jsonSlice(datatype string, d []byte) (any, error) {
	switch datatype {
	case BOOL:
		return unmarshalAs[bool](d)
	case INT8:
		return unmarshalAs[int8](d)
	case INT16:
		return unmarshalAs[int16](d)
	case INT32:
		return unmarshalAs[int32](d)
	case INT64:
		return unmarshalAs[int64](d)
	case UINT8:
		// encoding/json reads a []uint8 from a JSON array element-wise.
		return unmarshalAs[uint8](d)
	case UINT16:
		return unmarshalAs[uint16](d)
	case UINT32:
		return unmarshalAs[uint32](d)
	case UINT64:
		return unmarshalAs[uint64](d)
	case FP32:
		return unmarshalAs[float32](d)
	case FP64:
		return unmarshalAs[float64](d)
	}
	return unmarshalAs[string](d)
}

func unmarshalAs[T any](d []byte) ([]T, error) {
	var out []T
	err := json.Unmarshal(d, &out)
	return out, err
}
