package traffic

import (
	"math"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/google/go-cmp/cmp"
)

func tensor(name, datatype string, shape []int64, data any) oip.Tensor {
	return oip.Tensor{Name: name, Datatype: datatype, Shape: shape, Data: data}
}

func TestCompare(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	probs := tensor("probs", oip.FP32, []int64{1, 3}, []float32{0.25, 0.5, 0.25})
	label := tensor("label", oip.BYTES, []int64{1}, []string{"cat"})
	tol := Tolerance{Abs: 1e-6, Rel: 1e-3}
	tests := []struct {
		name            string
		primary, shadow []oip.Tensor
		tol             Tolerance
		want            Result
	}{
		{"identical", []oip.Tensor{probs, label}, []oip.Tensor{probs, label}, tol, Result{Agree: true}},
		{"matched by name, not order", []oip.Tensor{probs, label}, []oip.Tensor{label, probs}, tol, Result{Agree: true}},
		{"no outputs", nil, nil, tol, Result{Agree: true}},
		{"within the relative bound", []oip.Tensor{probs},
			[]oip.Tensor{tensor("probs", oip.FP32, []int64{1, 3}, []float32{0.25, 0.5002, 0.25})}, tol, Result{Agree: true}},
		{"beyond it", []oip.Tensor{probs},
			[]oip.Tensor{tensor("probs", oip.FP32, []int64{1, 3}, []float32{0.25, 0.6, 0.15})}, tol,
			Result{Tensor: "probs", Index: 1, Primary: "0.5", Shadow: "0.6",
				Reason: `output "probs" differs at element 1: primary 0.5, shadow 0.6 (by 0.1, more than the tolerance 0.000501)`}},
		{"zero tolerance", []oip.Tensor{probs},
			[]oip.Tensor{tensor("probs", oip.FP32, []int64{1, 3}, []float32{0.25, 0.50000006, 0.25})}, Tolerance{},
			Result{Tensor: "probs", Index: 1, Primary: "0.5", Shadow: "0.50000006",
				Reason: `output "probs" differs at element 1: primary 0.5, shadow 0.50000006 (by 5.96e-08, more than the tolerance 0)`}},
		{"NaN agrees with NaN", []oip.Tensor{tensor("y", oip.FP64, []int64{2}, []float64{nan, inf})},
			[]oip.Tensor{tensor("y", oip.FP64, []int64{2}, []float64{nan, inf})}, tol, Result{Agree: true}},
		{"NaN differs from a number", []oip.Tensor{tensor("y", oip.FP64, []int64{1}, []float64{1})},
			[]oip.Tensor{tensor("y", oip.FP64, []int64{1}, []float64{nan})}, tol,
			Result{Tensor: "y", Index: 0, Primary: "1", Shadow: "NaN", Reason: `output "y" differs at element 0: primary 1, shadow NaN`}},
		{"an infinity is not within any relative bound", []oip.Tensor{tensor("y", oip.FP64, []int64{1}, []float64{inf})},
			[]oip.Tensor{tensor("y", oip.FP64, []int64{1}, []float64{1e300})}, Tolerance{Rel: 1},
			Result{Tensor: "y", Index: 0, Primary: "+Inf", Shadow: "1e+300", Reason: `output "y" differs at element 0: primary +Inf, shadow 1e+300`}},
		{"FP64 agrees with FP32", []oip.Tensor{probs},
			[]oip.Tensor{tensor("probs", oip.FP64, []int64{1, 3}, []float64{0.25, 0.5, 0.25})}, Tolerance{}, Result{Agree: true}},
		{"FP16 against FP32", []oip.Tensor{tensor("h", oip.FP16, []int64{2}, []oip.Float16{oip.Float16From(1.5), oip.Float16From(2)})},
			[]oip.Tensor{tensor("h", oip.FP32, []int64{2}, []float32{1.5, 2.5})}, tol,
			Result{Tensor: "h", Index: 1, Primary: "2", Shadow: "2.5", Reason: `output "h" differs at element 1: primary 2, shadow 2.5 (by 0.5, more than the tolerance 0.002)`}},
		{"large int64 are compared exactly", []oip.Tensor{tensor("id", oip.INT64, []int64{1}, []int64{1<<53 + 1})},
			[]oip.Tensor{tensor("id", oip.INT64, []int64{1}, []int64{1 << 53})}, Tolerance{},
			Result{Tensor: "id", Index: 0, Primary: "9007199254740993", Shadow: "9007199254740992",
				Reason: `output "id" differs at element 0: primary 9007199254740993, shadow 9007199254740992 (by 1, more than the tolerance 0)`}},
		{"integers within the absolute bound", []oip.Tensor{tensor("n", oip.INT8, []int64{2}, []int8{-128, 5})},
			[]oip.Tensor{tensor("n", oip.INT8, []int64{2}, []int8{127, 6})}, Tolerance{Abs: 255},
			Result{Agree: true}},
		{"integers across the sign", []oip.Tensor{tensor("n", oip.INT8, []int64{1}, []int8{-128})},
			[]oip.Tensor{tensor("n", oip.INT8, []int64{1}, []int8{127})}, Tolerance{Abs: 254},
			Result{Tensor: "n", Index: 0, Primary: "-128", Shadow: "127",
				Reason: `output "n" differs at element 0: primary -128, shadow 127 (by 255, more than the tolerance 254)`}},
		{"strings exactly", []oip.Tensor{label}, []oip.Tensor{tensor("label", oip.BYTES, []int64{1}, []string{"dog"})}, Tolerance{Abs: 1},
			Result{Tensor: "label", Index: 0, Primary: `"cat"`, Shadow: `"dog"`, Reason: `output "label" differs at element 0: primary "cat", shadow "dog"`}},
		{"booleans exactly", []oip.Tensor{tensor("b", oip.BOOL, []int64{2}, []bool{true, false})},
			[]oip.Tensor{tensor("b", oip.BOOL, []int64{2}, []bool{true, true})}, tol,
			Result{Tensor: "b", Index: 1, Primary: "false", Shadow: "true", Reason: `output "b" differs at element 1: primary false, shadow true`}},
		{"missing output", []oip.Tensor{probs, label}, []oip.Tensor{probs}, tol,
			Result{Tensor: "label", Index: -1, Reason: `the shadow has no output "label"`}},
		{"extra output", []oip.Tensor{probs}, []oip.Tensor{probs, label}, tol,
			Result{Tensor: "label", Index: -1, Reason: `the shadow has an output "label" that the primary has not`}},
		{"shape", []oip.Tensor{probs}, []oip.Tensor{tensor("probs", oip.FP32, []int64{3, 1}, []float32{0.25, 0.5, 0.25})}, tol,
			Result{Tensor: "probs", Index: -1, Reason: `output "probs" has shape [1,3] in the primary, [3,1] in the shadow`}},
		{"numbers against strings", []oip.Tensor{label}, []oip.Tensor{tensor("label", oip.INT64, []int64{1}, []int64{3})}, tol,
			Result{Tensor: "label", Index: -1, Reason: `output "label" has datatype BYTES in the primary, INT64 in the shadow`}},
		{"malformed shadow output", []oip.Tensor{probs}, []oip.Tensor{tensor("probs", oip.FP32, []int64{1, 3}, []float32{0.25})}, tol,
			Result{Tensor: "probs", Index: -1, Reason: `the shadow's output is malformed: "probs": shape [1,3] holds 3 elements but data has 1`}},
		{"data of the wrong type", []oip.Tensor{tensor("y", oip.FP32, []int64{1}, []float64{1})}, []oip.Tensor{tensor("y", oip.FP32, []int64{1}, []float32{1})}, tol,
			Result{Tensor: "y", Index: -1, Reason: `the primary's output is malformed: "y": data of type []float64 does not match datatype FP32 ([]float32)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Compare(tc.primary, tc.shadow, tc.tol)); diff != "" {
				t.Errorf("Compare (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompareClipsLongValues(t *testing.T) {
	long := strings.Repeat("é", 1000)
	r := Compare([]oip.Tensor{tensor("s", oip.BYTES, []int64{1}, []string{long})},
		[]oip.Tensor{tensor("s", oip.BYTES, []int64{1}, []string{long + "!"})}, Tolerance{})
	if r.Agree || len(r.Primary) > maxValueBytes || len(r.Shadow) > maxValueBytes {
		t.Errorf("values of %d and %d bytes, want a disagreement quoting at most %d bytes each", len(r.Primary), len(r.Shadow), maxValueBytes)
	}
	if !strings.HasSuffix(r.Primary, "…") || !strings.HasPrefix(r.Primary, `"éé`) {
		t.Errorf("clipped value %q, want the start of the string and a mark", r.Primary)
	}
}

func TestToleranceValidate(t *testing.T) {
	tests := []struct {
		tol  Tolerance
		want string
	}{
		{DefaultTolerance, ""},
		{Tolerance{}, ""},
		{Tolerance{Abs: -1}, "tolerance: the absolute bound -1 must be a number of 0 or more, e.g. 1e-5"},
		{Tolerance{Rel: math.NaN()}, "tolerance: the relative bound NaN must be a number of 0 or more, e.g. 1e-5"},
	}
	for _, tc := range tests {
		got := ""
		if err := tc.tol.Validate(); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%+v.Validate() = %q, want %q", tc.tol, got, tc.want)
		}
	}
}

// TestDefaultToleranceAbsorbsFloat32Rounding checks DefaultTolerance against
// what it is for: the same sums in float32 in another order agree, a change
// in the 4th significant digit does not.
func TestDefaultToleranceAbsorbsFloat32Rounding(t *testing.T) {
	var fwd, back float32
	xs := make([]float32, 1000)
	for i := range xs {
		xs[i] = float32(math.Sin(float64(i))) * 0.01
	}
	for i := range xs {
		fwd += xs[i]
		back += xs[len(xs)-1-i]
	}
	if fwd == back {
		t.Log("both orders gave the same sum; the check below is weaker")
	}
	if !DefaultTolerance.Agree(float64(back), float64(fwd)) {
		t.Errorf("sums %v and %v of the same numbers disagree under DefaultTolerance", fwd, back)
	}
	if DefaultTolerance.Agree(0.1235, 0.1234) {
		t.Error("0.1235 agrees with 0.1234 under DefaultTolerance")
	}
}

func BenchmarkCompare1000Floats(b *testing.B) {
	data := make([]float32, 1000)
	for i := range data {
		data[i] = float32(i) / 7
	}
	p := []oip.Tensor{tensor("y", oip.FP32, []int64{1, 1000}, data)}
	s := []oip.Tensor{tensor("y", oip.FP32, []int64{1, 1000}, append([]float32(nil), data...))}
	b.ReportAllocs()
	for b.Loop() {
		if !Compare(p, s, DefaultTolerance).Agree {
			b.Fatal("identical tensors disagree")
		}
	}
}
