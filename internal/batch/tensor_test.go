package batch

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/oip"
)

// TestConcatSplitRoundTrip joins tensors of every datatype along dimension 0
// and splits them back.
func TestConcatSplitRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		datatype string
		a, b     any // a holds 1 row of 2, b holds 2 rows of 2
		joined   any
	}{
		{"FP32", oip.FP32, []float32{1, 2}, []float32{3, 4, 5, 6}, []float32{1, 2, 3, 4, 5, 6}},
		{"FP64", oip.FP64, []float64{1, 2}, []float64{3, 4, 5, 6}, []float64{1, 2, 3, 4, 5, 6}},
		{"INT32", oip.INT32, []int32{1, 2}, []int32{3, 4, 5, 6}, []int32{1, 2, 3, 4, 5, 6}},
		{"INT64", oip.INT64, []int64{1, 2}, []int64{3, 4, 5, 6}, []int64{1, 2, 3, 4, 5, 6}},
		{"BOOL", oip.BOOL, []bool{true, false}, []bool{false, true, true, true}, []bool{true, false, false, true, true, true}},
		{"BYTES", oip.BYTES, []string{"a", "b"}, []string{"c", "d", "e", "f"}, []string{"a", "b", "c", "d", "e", "f"}},
		{"INT8", oip.INT8, []int8{1, -2}, []int8{3, 4, 5, -128}, []int8{1, -2, 3, 4, 5, -128}},
		{"INT16", oip.INT16, []int16{1, 2}, []int16{3, 4, 5, 6}, []int16{1, 2, 3, 4, 5, 6}},
		{"UINT8", oip.UINT8, []uint8{1, 2}, []uint8{3, 4, 5, 255}, []uint8{1, 2, 3, 4, 5, 255}},
		{"UINT16", oip.UINT16, []uint16{1, 2}, []uint16{3, 4, 5, 6}, []uint16{1, 2, 3, 4, 5, 6}},
		{"UINT32", oip.UINT32, []uint32{1, 2}, []uint32{3, 4, 5, 6}, []uint32{1, 2, 3, 4, 5, 6}},
		{"UINT64", oip.UINT64, []uint64{1, 2}, []uint64{3, 4, 5, 6}, []uint64{1, 2, 3, 4, 5, 6}},
		{"FP16", oip.FP16, []oip.Float16{1, 2}, []oip.Float16{3, 4, 5, 6}, []oip.Float16{1, 2, 3, 4, 5, 6}},
		{"BF16", oip.BF16, []oip.BFloat16{1, 2}, []oip.BFloat16{3, 4, 5, 6}, []oip.BFloat16{1, 2, 3, 4, 5, 6}},
	}
	if len(tests) != len(oip.Datatypes) {
		t.Fatalf("%d cases for %d datatypes", len(tests), len(oip.Datatypes))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := oip.Tensor{Name: "x", Datatype: tt.datatype, Shape: []int64{1, 2}, Data: tt.a}
			b := oip.Tensor{Name: "x", Datatype: tt.datatype, Shape: []int64{2, 2}, Data: tt.b}
			joined, err := Concat([]oip.Tensor{a, b})
			if err != nil {
				t.Fatal(err)
			}
			want := oip.Tensor{Name: "x", Datatype: tt.datatype, Shape: []int64{3, 2}, Data: tt.joined}
			if diff := cmp.Diff(want, joined); diff != "" {
				t.Errorf("Concat (-want +got):\n%s", diff)
			}
			parts, err := Split(joined, []int{1, 2})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]oip.Tensor{a, b}, parts); diff != "" {
				t.Errorf("Split (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSplitPartsDoNotOverlap checks that appending to one part cannot write
// into the next.
func TestSplitPartsDoNotOverlap(t *testing.T) {
	parts, err := Split(oip.Tensor{Name: "y", Datatype: oip.INT64, Shape: []int64{2}, Data: []int64{1, 2}}, []int{1, 1})
	if err != nil {
		t.Fatal(err)
	}
	_ = append(parts[0].Data.([]int64), 99)
	if got := parts[1].Data.([]int64)[0]; got != 2 {
		t.Errorf("appending to part 0 changed part 1 to %d", got)
	}
}

func TestConcatSplitErrors(t *testing.T) {
	f32 := func(shape []int64, data ...float32) oip.Tensor {
		return oip.Tensor{Name: "x", Datatype: oip.FP32, Shape: shape, Data: data}
	}
	concat := []struct {
		name    string
		parts   []oip.Tensor
		wantErr string
	}{
		{"none", nil, "no tensors"},
		{"scalar", []oip.Tensor{f32(nil, 1), f32(nil, 2)}, "scalar"},
		{"datatypes differ", []oip.Tensor{f32([]int64{1}, 1), {Name: "x", Datatype: oip.INT64, Shape: []int64{1}, Data: []int64{1}}}, "datatype INT64 differs from FP32"},
		{"inner dims differ", []oip.Tensor{f32([]int64{1, 2}, 1, 2), f32([]int64{1, 1}, 1)}, "differs from [1 2] after dimension 0"},
		{"data short", []oip.Tensor{f32([]int64{1, 2}, 1, 2), f32([]int64{2, 2}, 1)}, "4 elements but data has 1"},
		{"go types differ", []oip.Tensor{f32([]int64{1}, 1), {Name: "x", Datatype: oip.FP32, Shape: []int64{1}, Data: []float64{1}}}, "data of type []float64 does not match datatype FP32"},
	}
	for _, tt := range concat {
		t.Run("concat "+tt.name, func(t *testing.T) {
			if _, err := Concat(tt.parts); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Concat error = %v; want it to contain %q", err, tt.wantErr)
			}
		})
	}
	split := []struct {
		name    string
		t       oip.Tensor
		rows    []int
		wantErr string
	}{
		{"scalar", f32(nil, 1), []int{1}, "scalar"},
		{"rows do not add up", f32([]int64{3}, 1, 2, 3), []int{1, 1}, "has 3 rows, want 2"},
		{"negative rows", f32([]int64{1}, 1), []int{2, -1}, "negative"},
		{"data short", f32([]int64{3}, 1), []int{3}, "3 elements but data has 1"},
	}
	for _, tt := range split {
		t.Run("split "+tt.name, func(t *testing.T) {
			if _, err := Split(tt.t, tt.rows); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Split error = %v; want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
