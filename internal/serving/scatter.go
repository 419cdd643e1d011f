package serving

import "fmt"

// Scatter splits an OIP v2 infer request with many rows into segments that
// replicas serve in parallel: a request whose inputs all share a batch
// dimension (shape[0]) above SegmentRows is cut along it into segments of
// SegmentRows rows (the last may be shorter), each sent to a replica of
// its own (waking and scaling the deployment like any request, retried on
// another replica when one fails), and the outputs are joined back in row
// order. The client sees one ordinary answer, or one error that names the
// segment that failed and why. A request at or below SegmentRows, or
// without a common batch dimension, goes to one replica unchanged.
type Scatter struct {
	// SegmentRows is the most rows one segment carries, at least 1.
	// +kubebuilder:validation:Minimum=1
	SegmentRows int32 `json:"segmentRows"`
	// MaxSegments bounds the segments of one request: a request that
	// would need more is cut into MaxSegments larger segments instead.
	// Default 64, at most 1024.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	MaxSegments int32 `json:"maxSegments,omitempty"`
}

// Bounds of a Scatter.
const (
	DefaultMaxSegments = 64
	MaxMaxSegments     = 1024
)

// MaxSegmentsOrDefault is the most segments one request is cut into.
func (s *Scatter) MaxSegmentsOrDefault() int {
	if s == nil || s.MaxSegments == 0 {
		return DefaultMaxSegments
	}
	return int(s.MaxSegments)
}

// validateScatter checks spec.scatter.
func (s *Spec) validateScatter() []*FieldError {
	sc := s.Scatter
	if sc == nil {
		return nil
	}
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{field, fmt.Sprintf(format, args...)})
	}
	if sc.SegmentRows < 1 {
		add("spec.scatter.segmentRows", "must be at least 1 (the most rows one segment carries), got %d", sc.SegmentRows)
	}
	if m := sc.MaxSegments; m != 0 && (m < 1 || m > MaxMaxSegments) {
		add("spec.scatter.maxSegments", "must be between 1 and %d, got %d: remove it for the default %d", MaxMaxSegments, m, DefaultMaxSegments)
	}
	if s.OpenAI() {
		add("spec.scatter", "splits OIP v2 infer requests by rows; a deployment with protocol openai has none: remove it")
	}
	return errs
}
