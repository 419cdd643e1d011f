package oip

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// sample is one tensor per datatype, with each type's extreme values.
func samples() []Tensor {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	return []Tensor{
		{Name: "b", Datatype: BOOL, Shape: []int64{3}, Data: []bool{true, false, true}},
		{Name: "i8", Datatype: INT8, Shape: []int64{3}, Data: []int8{math.MinInt8, 0, math.MaxInt8}},
		{Name: "i16", Datatype: INT16, Shape: []int64{3}, Data: []int16{math.MinInt16, -1, math.MaxInt16}},
		{Name: "i32", Datatype: INT32, Shape: []int64{3}, Data: []int32{math.MinInt32, 7, math.MaxInt32}},
		{Name: "i64", Datatype: INT64, Shape: []int64{3}, Data: []int64{math.MinInt64, 7, math.MaxInt64}},
		{Name: "u8", Datatype: UINT8, Shape: []int64{3}, Data: []uint8{0, 128, math.MaxUint8}},
		{Name: "u16", Datatype: UINT16, Shape: []int64{3}, Data: []uint16{0, 1, math.MaxUint16}},
		{Name: "u32", Datatype: UINT32, Shape: []int64{3}, Data: []uint32{0, 1, math.MaxUint32}},
		{Name: "u64", Datatype: UINT64, Shape: []int64{3}, Data: []uint64{0, 1, math.MaxUint64}},
		{Name: "f16", Datatype: FP16, Shape: []int64{3}, Data: []Float16{Float16From(-1.5), Float16From(nan), Float16From(65504)}},
		{Name: "bf16", Datatype: BF16, Shape: []int64{3}, Data: []BFloat16{BFloat16From(0.5), BFloat16From(-inf), BFloat16From(3e38)}},
		{Name: "f32", Datatype: FP32, Shape: []int64{3}, Data: []float32{nan, inf, -math.MaxFloat32}},
		{Name: "f64", Datatype: FP64, Shape: []int64{3}, Data: []float64{math.Inf(-1), math.SmallestNonzeroFloat64, math.MaxFloat64}},
		{Name: "s", Datatype: BYTES, Shape: []int64{3}, Data: []string{"", "Grüße", "a\x00\"b"}},
	}
}

func TestDatatypeTable(t *testing.T) {
	if len(samples()) != len(Datatypes) {
		t.Fatalf("samples cover %d datatypes, the protocol has %d", len(samples()), len(Datatypes))
	}
	for _, s := range samples() {
		dt, ok := DatatypeOf(s.Data)
		if !ok || dt != s.Datatype {
			t.Errorf("DatatypeOf(%T) = %q, %v; want %s", s.Data, dt, ok, s.Datatype)
		}
		if got := fmt.Sprintf("%T", s.Data); got != GoType(s.Datatype) {
			t.Errorf("GoType(%s) = %s, data is %s", s.Datatype, GoType(s.Datatype), got)
		}
		if err := s.Check(); err != nil {
			t.Errorf("Check: %v", err)
		}
	}
	if ElementSize("FP8") != -1 || Known("FP8") || ElementSize(BYTES) != 0 || ElementSize(UINT64) != 8 || ElementSize(BF16) != 2 {
		t.Error("ElementSize disagrees with the table")
	}
}

// TestRawRoundTrip writes each datatype in raw form and reads it back.
func TestRawRoundTrip(t *testing.T) {
	for _, s := range samples() {
		t.Run(s.Datatype, func(t *testing.T) {
			b, err := RawBytes(s)
			if err != nil {
				t.Fatal(err)
			}
			if size, _ := RawSize(s); size != len(b) {
				t.Errorf("RawSize = %d, RawBytes wrote %d", size, len(b))
			}
			if es := ElementSize(s.Datatype); es > 0 && len(b) != 3*es {
				t.Errorf("raw data is %d bytes, want 3 × %d", len(b), es)
			}
			got, err := FromRaw(s.Datatype, s.Shape, b)
			if err != nil {
				t.Fatal(err)
			}
			got.Name = s.Name
			if diff := cmp.Diff(s, got, cmpopts.EquateNaNs()); diff != "" && s.Datatype != FP16 {
				t.Errorf("FromRaw(RawBytes) (-want +got):\n%s", diff)
			}
			if s.Datatype == FP16 && !bytes.Equal(mustRaw(t, got), b) {
				t.Error("FP16 bits changed on a round trip")
			}
		})
	}
}

func mustRaw(t *testing.T, tensor Tensor) []byte {
	t.Helper()
	b, err := RawBytes(tensor)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRawLayout pins the byte layout clients and workers rely on.
func TestRawLayout(t *testing.T) {
	tests := []struct {
		t    Tensor
		want []byte
	}{
		{Tensor{Datatype: INT16, Shape: []int64{2}, Data: []int16{1, -2}}, []byte{1, 0, 0xfe, 0xff}},
		{Tensor{Datatype: FP32, Shape: []int64{1}, Data: []float32{1}}, []byte{0, 0, 0x80, 0x3f}},
		{Tensor{Datatype: FP16, Shape: []int64{}, Data: []Float16{Float16From(1)}}, []byte{0, 0x3c}},
		{Tensor{Datatype: BOOL, Shape: []int64{2}, Data: []bool{true, false}}, []byte{1, 0}},
		{Tensor{Datatype: BYTES, Shape: []int64{2}, Data: []string{"ab", ""}}, []byte{2, 0, 0, 0, 'a', 'b', 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		got, err := RawBytes(tt.t)
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("RawBytes(%s %v) = %v, %v; want %v", tt.t.Datatype, tt.t.Data, got, err, tt.want)
		}
	}
}

func TestFromRawErrors(t *testing.T) {
	tests := []struct {
		name     string
		datatype string
		shape    []int64
		b        []byte
		wantErr  string
	}{
		{"short", FP32, []int64{2}, make([]byte, 7), "7 bytes of data do not fit shape [2] of FP32: it needs 8 bytes (2 elements of 4 bytes)"},
		{"long", UINT8, []int64{2}, make([]byte, 3), "needs 2 bytes"},
		{"bool not 0 or 1", BOOL, []int64{2}, []byte{0, 2}, "byte 1 is 2"},
		{"unknown datatype", "FP8", []int64{1}, []byte{0}, `unsupported datatype "FP8"`},
		{"negative dim", INT8, []int64{-1}, nil, "negative dimension"},
		{"bytes cut in length", BYTES, []int64{1}, []byte{1, 0}, "middle of the 4-byte length of BYTES element 0"},
		{"bytes element too long", BYTES, []int64{1}, []byte{9, 0, 0, 0, 'a'}, "claims 9 bytes but only 1 remain"},
		{"bytes more elements", BYTES, []int64{1}, []byte{0, 0, 0, 0, 0, 0, 0, 0}, "more than the 1 BYTES elements"},
		{"bytes fewer elements", BYTES, []int64{3}, []byte{0, 0, 0, 0}, "holds 1 BYTES elements but the shape describes 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromRaw(tt.datatype, tt.shape, tt.b)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("FromRaw error = %v; want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestFromRawBoundedByBytes: a shape of 2^31 elements with 4 bytes of data
// must be refused without allocating by the shape, for every datatype.
func TestFromRawBoundedByBytes(t *testing.T) {
	for _, dt := range Datatypes {
		t.Run(dt, func(t *testing.T) {
			shape := []int64{1 << 15, 1 << 15}
			b := []byte{4, 0, 0, 0}
			var err error
			got := allocated(func() { _, err = FromRaw(dt, shape, b) })
			if err == nil {
				t.Fatal("FromRaw accepted 4 bytes for 2^30 elements")
			}
			if got > 1<<16 {
				t.Errorf("FromRaw of 4 bytes allocated %d bytes", got)
			}
		})
	}
}

func TestDecodeDatatypes(t *testing.T) {
	tests := []struct {
		datatype string
		data     string
		want     any
		wantErr  string
	}{
		{INT8, `[-128,127]`, []int8{-128, 127}, ""},
		{INT8, `[128,0]`, nil, "element 0 (128)"},
		{INT16, `[-32768,32767]`, []int16{-32768, 32767}, ""},
		{UINT8, `[0,255]`, []uint8{0, 255}, ""},
		{UINT8, `[-1,0]`, nil, "element 0 (-1)"},
		{UINT8, `[0,1.5]`, nil, "element 1 (1.5)"},
		{UINT16, `[65535,0]`, []uint16{65535, 0}, ""},
		{UINT32, `[4294967295,1]`, []uint32{4294967295, 1}, ""},
		{UINT64, `[18446744073709551615,0]`, []uint64{math.MaxUint64, 0}, ""},
		{FP16, `[0.1,-2]`, []Float16{Float16From(0.1), Float16From(-2)}, ""},
		{FP16, `[70000,1]`, nil, "element 0 (70000) is out of range: FP16 holds magnitudes up to 65504"},
		{FP16, `["NaN","-Infinity"]`, []Float16{0x7e00, 0xfc00}, ""},
		{BF16, `[1,null]`, []BFloat16{BFloat16From(1), BFloat16From(float32(math.NaN()))}, ""},
		{FP32, `["NaN","Infinity"]`, []float32{float32(math.NaN()), float32(math.Inf(1))}, ""},
		{FP32, `["-inf","+INF"]`, []float32{float32(math.Inf(-1)), float32(math.Inf(1))}, ""},
		{FP32, `[1e39,0]`, nil, "element 0 (1e39) is out of range: FP32"},
		{FP32, `["one",0]`, nil, `element 0 ("one")`},
		{FP64, `["-Infinity",1e308]`, []float64{math.Inf(-1), 1e308}, ""},
		{INT32, `["NaN",1]`, nil, `element 0 ("NaN")`},
	}
	for _, tt := range tests {
		t.Run(tt.datatype+" "+tt.data, func(t *testing.T) {
			got, err := Decode(RequestInput{Name: "x", Shape: []int64{2}, Datatype: tt.datatype, Data: json.RawMessage(tt.data)})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Decode error = %v; want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.datatype == FP16 || tt.datatype == BF16 {
				// NaNs differ in payload only; compare what they mean.
				g, _ := got.Float32s()
				w, _ := Tensor{Data: tt.want}.Float32s()
				if diff := cmp.Diff(w, g, cmpopts.EquateNaNs()); diff != "" {
					t.Errorf("Decode (-want +got):\n%s", diff)
				}
				return
			}
			if diff := cmp.Diff(tt.want, got.Data, cmpopts.EquateNaNs()); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeScalar: shape [] takes one element, as [x] or as a bare x.
func TestDecodeScalar(t *testing.T) {
	for _, data := range []string{`["hello"]`, `"hello"`} {
		got, err := Decode(RequestInput{Name: "s", Shape: []int64{}, Datatype: BYTES, Data: json.RawMessage(data)})
		if err != nil {
			t.Fatalf("Decode(%s): %v", data, err)
		}
		if diff := cmp.Diff(Tensor{Name: "s", Datatype: BYTES, Shape: []int64{}, Data: []string{"hello"}}, got); diff != "" {
			t.Errorf("Decode(%s) (-want +got):\n%s", data, diff)
		}
	}
	if _, err := Decode(RequestInput{Name: "s", Shape: []int64{}, Datatype: BYTES, Data: json.RawMessage(`["a","b"]`)}); err == nil || !strings.Contains(err.Error(), "shape [] holds 1 elements but data has 2") {
		t.Errorf("two elements for shape []: error = %v", err)
	}
	if _, err := Decode(RequestInput{Name: "s", Shape: []int64{1}, Datatype: BYTES, Data: json.RawMessage(`"a"`)}); err == nil || !strings.Contains(err.Error(), "must be a JSON array") {
		t.Errorf("bare element for shape [1]: error = %v", err)
	}
}

func TestFloat32sEveryNumericType(t *testing.T) {
	for _, s := range samples() {
		got, err := s.Float32s()
		if !IsNumeric(s.Datatype) {
			if err == nil {
				t.Errorf("Float32s of %s succeeded", s.Datatype)
			}
			continue
		}
		if err != nil || len(got) != 3 {
			t.Errorf("Float32s of %s = %v, %v", s.Datatype, got, err)
		}
	}
}
