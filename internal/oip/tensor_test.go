package oip

import (
	"encoding/json"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      RequestInput
		want    any
		wantErr string
	}{
		{name: "flat fp32", in: RequestInput{Name: "x", Shape: []int64{2, 2}, Datatype: FP32, Data: json.RawMessage(`[1,2,3,4.5]`)}, want: []float32{1, 2, 3, 4.5}},
		{name: "nested fp64", in: RequestInput{Name: "x", Shape: []int64{2, 2}, Datatype: FP64, Data: json.RawMessage(`[[1,2],[3,4]]`)}, want: []float64{1, 2, 3, 4}},
		{name: "null is missing", in: RequestInput{Name: "x", Shape: []int64{2}, Datatype: FP64, Data: json.RawMessage(`[1,null]`)}, want: []float64{1, math.NaN()}},
		{name: "int64", in: RequestInput{Name: "x", Shape: []int64{3}, Datatype: INT64, Data: json.RawMessage(`[1,2,3]`)}, want: []int64{1, 2, 3}},
		{name: "bytes", in: RequestInput{Name: "x", Shape: []int64{1}, Datatype: BYTES, Data: json.RawMessage(`["a"]`)}, want: []string{"a"}},
		{name: "bool", in: RequestInput{Name: "x", Shape: []int64{2}, Datatype: BOOL, Data: json.RawMessage(`[true,false]`)}, want: []bool{true, false}},
		{name: "count mismatch", in: RequestInput{Name: "x", Shape: []int64{2, 3}, Datatype: FP32, Data: json.RawMessage(`[1,2]`)}, wantErr: `input "x": shape [2 3] holds 6 elements but data has 2`},
		{name: "negative dim", in: RequestInput{Name: "x", Shape: []int64{-1}, Datatype: FP32, Data: json.RawMessage(`[1]`)}, wantErr: "negative dimension"},
		{name: "string in fp32", in: RequestInput{Name: "x", Shape: []int64{1}, Datatype: FP32, Data: json.RawMessage(`["a"]`)}, wantErr: `does not match datatype FP32: element 0 ("a")`},
		{name: "null in int", in: RequestInput{Name: "x", Shape: []int64{1}, Datatype: INT32, Data: json.RawMessage(`[null]`)}, wantErr: "element 0 is null"},
		{name: "int overflow", in: RequestInput{Name: "x", Shape: []int64{1}, Datatype: INT32, Data: json.RawMessage(`[4294967296]`)}, wantErr: "does not match datatype INT32"},
		{name: "unknown dtype", in: RequestInput{Name: "x", Shape: []int64{1}, Datatype: "FP8", Data: json.RawMessage(`[1]`)}, wantErr: `unsupported datatype "FP8"`},
		{name: "not an array", in: RequestInput{Name: "x", Shape: []int64{1}, Datatype: FP32, Data: json.RawMessage(`1`)}, wantErr: "must be a JSON array"},
		{name: "missing data", in: RequestInput{Name: "x", Shape: []int64{1}, Datatype: FP32}, wantErr: "data is missing"},
		{name: "long element is not echoed", in: RequestInput{Name: "x", Shape: []int64{1}, Datatype: FP32, Data: json.RawMessage(`["` + strings.Repeat("s", 5000) + `"]`)}, wantErr: `element 0 ("sssssssssssssssssssssssssssssss... (5002 bytes))`},
		{name: "huge shape", in: RequestInput{Name: "x", Shape: []int64{1 << 20, 1 << 20}, Datatype: FP32, Data: json.RawMessage(`[1]`)}, wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Decode error = %v; want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tt.want, got.Data, cmpopts.EquateNaNs()); diff != "" {
				t.Errorf("Decode data (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeBoundedByBytes is the hostile input of issue 10: a shape of
// [214748364, 10] with one element made the replica allocate 17 GB by the
// declared shape before it counted the data. Decoding must cost memory in
// proportion to the bytes received.
func TestDecodeBoundedByBytes(t *testing.T) {
	for _, dt := range []string{FP32, FP64, INT32, INT64, BOOL} {
		t.Run(dt, func(t *testing.T) {
			data := json.RawMessage(`[0]`)
			if dt == BOOL {
				data = json.RawMessage(`[true]`)
			}
			in := RequestInput{Name: "x", Shape: []int64{214748364, 10}, Datatype: dt, Data: data}
			var err error
			allocs := testing.AllocsPerRun(1, func() { _, err = Decode(in) })
			if err == nil || !strings.Contains(err.Error(), "holds 2147483640 elements but data has 1") {
				t.Fatalf("Decode = %v; want the element count mismatch", err)
			}
			var ms runtimeMem
			ms.measure(t, func() { _, _ = Decode(in) })
			if ms.bytes > 1<<20 {
				t.Errorf("Decode of a 3-byte array allocated %d bytes (%v allocs); want it bounded by the bytes received", ms.bytes, allocs)
			}
		})
	}
}

func TestFloat32s(t *testing.T) {
	got, err := Tensor{Name: "x", Datatype: INT64, Data: []int64{1, -2}}.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]float32{1, -2}, got); diff != "" {
		t.Errorf("Float32s (-want +got):\n%s", diff)
	}
	if _, err := (Tensor{Name: "s", Datatype: BYTES, Data: []string{"a"}}).Float32s(); err == nil {
		t.Error("Float32s of BYTES succeeded; want an error")
	}
}

// runtimeMem measures the bytes a function allocates.
type runtimeMem struct{ bytes uint64 }

func (m *runtimeMem) measure(t *testing.T, f func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	m.bytes = after.TotalAlloc - before.TotalAlloc
}
