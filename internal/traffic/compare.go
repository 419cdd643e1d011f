package traffic

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/ebb-ml/ebb/internal/oip"
)

// Tolerance says how far a shadow's number may be from the primary's and
// still agree: |shadow - primary| <= Abs + Rel × |primary|.
type Tolerance struct {
	Abs float64 `json:"abs"`
	Rel float64 `json:"rel"`
}

// DefaultTolerance absorbs the float32 rounding that batching and thread
// counts bring to the same model (a few units in the 7th significant
// digit), and no change a model version makes on purpose.
var DefaultTolerance = Tolerance{Abs: 1e-6, Rel: 1e-5}

// Validate reports a bound that is negative or not a number.
func (t Tolerance) Validate() error {
	var errs []error
	for _, b := range []struct {
		name string
		v    float64
	}{{"absolute", t.Abs}, {"relative", t.Rel}} {
		if math.IsNaN(b.v) || math.IsInf(b.v, 0) || b.v < 0 {
			errs = append(errs, fmt.Errorf("tolerance: the %s bound %v must be a number of 0 or more, e.g. 1e-5", b.name, b.v))
		}
	}
	return errors.Join(errs...)
}

// Agree reports whether shadow agrees with primary within t. NaN agrees
// with NaN only, and an infinity with the same infinity only.
func (t Tolerance) Agree(shadow, primary float64) bool {
	switch {
	case shadow == primary:
		return true
	case math.IsNaN(shadow) || math.IsNaN(primary):
		return math.IsNaN(shadow) && math.IsNaN(primary)
	case math.IsInf(shadow, 0) || math.IsInf(primary, 0):
		return false
	}
	return math.Abs(shadow-primary) <= t.Abs+t.Rel*math.Abs(primary)
}

// Result is the comparison of one request's outputs. When they disagree,
// it names the first difference found: for sample disagreements and for
// people.
type Result struct {
	Agree bool `json:"agree"`
	// Tensor is the output that differs.
	Tensor string `json:"tensor,omitempty"`
	// Index is the row-major index of the first element that differs, or
	// -1 when the tensors differ as a whole (missing, shape, datatype).
	Index int `json:"index"`
	// Primary and Shadow are the differing values as text, each at most
	// maxValueBytes.
	Primary string `json:"primary,omitempty"`
	Shadow  string `json:"shadow,omitempty"`
	// Reason says what differs, in a sentence.
	Reason string `json:"reason,omitempty"`
}

// maxValueBytes caps each value a Result quotes.
const maxValueBytes = 256

// Compare compares a shadow's output tensors with the primary's, matched by
// name. They agree when both have the same outputs, each with the same
// shape, and every element agrees: numbers within tol, whatever their
// numeric datatypes (an FP64 output may agree with an FP32 one; integers of
// one datatype are compared exactly before tol is applied), booleans and
// strings (BYTES) exactly. A malformed tensor (data that does not match its
// datatype or shape) disagrees.
func Compare(primary, shadow []oip.Tensor, tol Tolerance) Result {
	for _, p := range primary {
		s, ok := find(shadow, p.Name)
		if !ok {
			return whole(p.Name, "the shadow has no output %q", p.Name)
		}
		if r := compareTensor(p, s, tol); !r.Agree {
			return r
		}
	}
	for _, s := range shadow {
		if _, ok := find(primary, s.Name); !ok {
			return whole(s.Name, "the shadow has an output %q that the primary has not", s.Name)
		}
	}
	return Result{Agree: true}
}

func find(ts []oip.Tensor, name string) (oip.Tensor, bool) {
	for _, t := range ts {
		if t.Name == name {
			return t, true
		}
	}
	return oip.Tensor{}, false
}

// whole is a Result for tensors that differ as a whole.
func whole(name, format string, args ...any) Result {
	return Result{Tensor: name, Index: -1, Reason: fmt.Sprintf(format, args...)}
}

func compareTensor(p, s oip.Tensor, tol Tolerance) Result {
	for _, t := range []struct {
		who string
		t   oip.Tensor
	}{{"primary", p}, {"shadow", s}} {
		if err := t.t.Check(); err != nil {
			return whole(p.Name, "the %s's output is malformed: %v", t.who, err)
		}
	}
	if !sameShape(p.Shape, s.Shape) {
		return whole(p.Name, "output %q has shape %s in the primary, %s in the shadow", p.Name, oip.FormatShape(p.Shape), oip.FormatShape(s.Shape))
	}
	numeric := oip.IsNumeric(p.Datatype) && oip.IsNumeric(s.Datatype)
	if p.Datatype != s.Datatype && !numeric {
		return whole(p.Name, "output %q has datatype %s in the primary, %s in the shadow", p.Name, p.Datatype, s.Datatype)
	}
	i := firstDifference(p.Data, s.Data, tol)
	if i < 0 {
		return Result{Agree: true}
	}
	r := Result{Tensor: p.Name, Index: i, Primary: element(p.Data, i), Shadow: element(s.Data, i)}
	r.Reason = fmt.Sprintf("output %q differs at element %d: primary %s, shadow %s", p.Name, i, r.Primary, r.Shadow)
	if a, b := floatAt(p.Data, i), floatAt(s.Data, i); numeric && finite(a) && finite(b) {
		r.Reason += fmt.Sprintf(" (by %.3g, more than the tolerance %.3g)", gap(p.Data, s.Data, i), tol.Abs+tol.Rel*math.Abs(a))
	}
	return r
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// firstDifference returns the index of the first element of s that does not
// agree with p's, or -1. p and s have passed Check and have as many
// elements; either both are numeric or both have the same Go type.
func firstDifference(p, s any, tol Tolerance) int {
	floats := func(x, y float64) bool { return tol.Agree(y, x) }
	switch p := p.(type) {
	case []float32:
		if s, ok := s.([]float32); ok {
			return diff(p, s, func(x, y float32) bool { return tol.Agree(float64(y), float64(x)) })
		}
	case []float64:
		if s, ok := s.([]float64); ok {
			return diff(p, s, floats)
		}
	case []int8:
		if s, ok := s.([]int8); ok {
			return diff(p, s, intAgree[int8](tol))
		}
	case []int16:
		if s, ok := s.([]int16); ok {
			return diff(p, s, intAgree[int16](tol))
		}
	case []int32:
		if s, ok := s.([]int32); ok {
			return diff(p, s, intAgree[int32](tol))
		}
	case []int64:
		if s, ok := s.([]int64); ok {
			return diff(p, s, intAgree[int64](tol))
		}
	case []uint8:
		if s, ok := s.([]uint8); ok {
			return diff(p, s, intAgree[uint8](tol))
		}
	case []uint16:
		if s, ok := s.([]uint16); ok {
			return diff(p, s, intAgree[uint16](tol))
		}
	case []uint32:
		if s, ok := s.([]uint32); ok {
			return diff(p, s, intAgree[uint32](tol))
		}
	case []uint64:
		if s, ok := s.([]uint64); ok {
			return diff(p, s, intAgree[uint64](tol))
		}
	case []bool:
		return diff(p, s.([]bool), func(x, y bool) bool { return x == y })
	case []string:
		return diff(p, s.([]string), func(x, y string) bool { return x == y })
	}
	// Two numeric datatypes of different Go types (or halves): compare as
	// float64.
	n, _ := oip.DataLen(p)
	for i := range n {
		if !floats(floatAt(p, i), floatAt(s, i)) {
			return i
		}
	}
	return -1
}

func diff[T any](p, s []T, agree func(p, s T) bool) int {
	for i := range p {
		if !agree(p[i], s[i]) {
			return i
		}
	}
	return -1
}

// gap returns the distance between element i of two numeric tensors,
// exact for 64-bit integers of one datatype.
func gap(p, s any, i int) float64 {
	switch p := p.(type) {
	case []int64:
		if s, ok := s.([]int64); ok {
			return distance(p[i], s[i])
		}
	case []uint64:
		if s, ok := s.([]uint64); ok {
			return distance(p[i], s[i])
		}
	}
	return math.Abs(floatAt(s, i) - floatAt(p, i))
}

type integer interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

// intAgree compares integers exactly, then, when they differ, their exact
// distance with the tolerance: int64 values above 2^53 that float64 cannot
// tell apart still differ.
func intAgree[T integer](tol Tolerance) func(p, s T) bool {
	return func(p, s T) bool {
		return p == s || distance(p, s) <= tol.Abs+tol.Rel*math.Abs(float64(p))
	}
}

// distance returns |a - b|, computed exactly (then rounded to float64)
// even across the sign.
func distance[T integer](a, b T) float64 {
	if a < b {
		a, b = b, a
	}
	return float64(uint64(a) - uint64(b))
}

// floatAt returns element i of numeric data as float64 (NaN if data is not
// numeric).
func floatAt(data any, i int) float64 {
	switch d := data.(type) {
	case []float32:
		return float64(d[i])
	case []float64:
		return d[i]
	case []int8:
		return float64(d[i])
	case []int16:
		return float64(d[i])
	case []int32:
		return float64(d[i])
	case []int64:
		return float64(d[i])
	case []uint8:
		return float64(d[i])
	case []uint16:
		return float64(d[i])
	case []uint32:
		return float64(d[i])
	case []uint64:
		return float64(d[i])
	case []oip.Float16:
		return float64(d[i].Float32())
	case []oip.BFloat16:
		return float64(d[i].Float32())
	}
	return math.NaN()
}

// element formats element i of data for a Result.
func element(data any, i int) string {
	switch d := data.(type) {
	case []float32:
		return strconv.FormatFloat(float64(d[i]), 'g', -1, 32)
	case []int64:
		return strconv.FormatInt(d[i], 10)
	case []uint64:
		return strconv.FormatUint(d[i], 10)
	case []bool:
		return strconv.FormatBool(d[i])
	case []string:
		return clip(strconv.Quote(clip(d[i], maxValueBytes)), maxValueBytes)
	}
	return strconv.FormatFloat(floatAt(data, i), 'g', -1, 64)
}

// clip cuts s to at most n bytes on a character boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := max(n-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
