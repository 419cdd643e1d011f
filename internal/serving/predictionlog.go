package serving

import (
	"fmt"
	"math"
	"strconv"
)

// PredictionLog asks the gateways to log a sampled share of the
// deployment's predictions (request and response bodies, with the model
// version, tenant, trace id and request id) to the prediction log that
// the home runs: files in ebb up's data dir, and S3 in a cluster
// (docs/observability.md). Which requests are logged is decided by a hash
// of the request id (X-Request-Id, or the gRPC request's id), so that a
// replay of the same requests logs the same ones.
type PredictionLog struct {
	// Sample is the share of requests logged, from 0 (none, as when
	// predictionLog is absent) to 1 (every request).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1
	Sample float64 `json:"sample"`
}

// Ratio returns the share of requests logged: 0 for a nil PredictionLog.
func (p *PredictionLog) Ratio() float64 {
	if p == nil {
		return 0
	}
	return p.Sample
}

// String says what is logged, for people: "10% of requests", "off".
func (p *PredictionLog) String() string {
	r := p.Ratio()
	if r <= 0 {
		return "off"
	}
	return strconv.FormatFloat(r*100, 'g', 4, 64) + "% of requests"
}

// validatePredictionLog checks spec.predictionLog.
func (s *Spec) validatePredictionLog() []*FieldError {
	p := s.PredictionLog
	if p == nil {
		return nil
	}
	if math.IsNaN(p.Sample) || p.Sample < 0 || p.Sample > 1 {
		return []*FieldError{{"spec.predictionLog.sample", fmt.Sprintf("must be between 0 and 1 (the share of requests logged: 0.1 logs one in ten, 1 every one), got %v", p.Sample)}}
	}
	return nil
}
