package serving

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// Shadow mirrors a share of a deployment's requests to a shadow version:
// the client gets the primary's answer and never waits for the shadow's,
// which is compared with it, tensor by tensor, within a tolerance.
type Shadow struct {
	// Model is the shadow version: a registry version ("diabetes:4",
	// "diabetes@challenger") or an artifact path. It may be the primary's
	// own model (the shadow then measures how much the model disagrees
	// with itself).
	Model string `json:"model"`
	// Percent of the primary's requests mirrored; default 100.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Percent int32 `json:"percent,omitempty"`
	// Tolerance says how far the shadow's numbers may be from the
	// primary's and agree: |shadow - primary| <= abs + rel × |primary|.
	// Default: abs 1e-6, rel 1e-5 (float32 rounding, nothing more).
	// +optional
	Tolerance *Tolerance `json:"tolerance,omitempty"`
	// MaxConcurrency bounds the mirrored requests in flight per gateway;
	// a mirror copy beyond it is dropped, and counted. Default 4.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=256
	MaxConcurrency int32 `json:"maxConcurrency,omitempty"`
	// Requests, when set, stops mirroring once this many mirrored
	// requests were judged (by each gateway).
	// +optional
	// +kubebuilder:validation:Minimum=0
	Requests int64 `json:"requests,omitempty"`
	// Until, when set (RFC 3339), stops mirroring at that time.
	// +optional
	Until string `json:"until,omitempty"`
	// Started is when the shadow was started (RFC 3339, set by `ebb
	// shadow start`): starting again with the same settings begins a
	// fresh comparison.
	// +optional
	Started string `json:"started,omitempty"`
}

// Tolerance is the bound within which a shadow's number agrees with the
// primary's: |shadow - primary| <= Abs + Rel × |primary|.
type Tolerance struct {
	Abs float64 `json:"abs"`
	Rel float64 `json:"rel"`
}

// ShadowTag names the shadow's track: its replicas run as name.shadow.
const ShadowTag = "shadow"

// Defaults of a Shadow.
const (
	DefaultShadowPercent        = 100
	DefaultShadowMaxConcurrency = 4
	MaxShadowConcurrency        = 256
)

// DefaultTolerance absorbs the float32 rounding that batching and thread
// counts bring to one model, and no change a new version makes on purpose.
var DefaultTolerance = Tolerance{Abs: 1e-6, Rel: 1e-5}

// ShadowTrack returns the track that runs deployment name's shadow; ok is
// false when the spec has none.
func (s *Spec) ShadowTrack(name string) (Track, bool) {
	if s.Shadow == nil {
		return Track{}, false
	}
	return Track{Key: name + TrackSep + ShadowTag, Tag: ShadowTag, Model: s.Shadow.Model}, true
}

// PercentOrDefault is the share mirrored.
func (sh *Shadow) PercentOrDefault() int32 {
	if sh.Percent == 0 {
		return DefaultShadowPercent
	}
	return sh.Percent
}

// MaxConcurrencyOrDefault is the bound on mirrored requests in flight.
func (sh *Shadow) MaxConcurrencyOrDefault() int32 {
	if sh.MaxConcurrency == 0 {
		return DefaultShadowMaxConcurrency
	}
	return sh.MaxConcurrency
}

// ToleranceOrDefault is the tolerance of the comparison.
func (sh *Shadow) ToleranceOrDefault() Tolerance {
	if sh.Tolerance == nil {
		return DefaultTolerance
	}
	return *sh.Tolerance
}

// UntilTime is when mirroring stops; zero when it does not by time.
func (sh *Shadow) UntilTime() time.Time {
	t, err := time.Parse(time.RFC3339, sh.Until)
	if err != nil {
		return time.Time{}
	}
	return t
}

// ID names one start of a shadow with its settings, defaults filled in (a
// default written out is the same shadow): what the data plane keeps a
// shadow's tally by, so that a new shadow, or the same one started again
// (Started), counts afresh. "" for none.
func (sh *Shadow) ID() string {
	if sh == nil {
		return ""
	}
	until := ""
	if t := sh.UntilTime(); !t.IsZero() {
		until = t.UTC().Format(time.RFC3339Nano)
	}
	b, _ := json.Marshal(struct {
		Model          string    `json:"model"`
		Percent        int32     `json:"percent"`
		Tolerance      Tolerance `json:"tolerance"`
		MaxConcurrency int32     `json:"maxConcurrency"`
		Requests       int64     `json:"requests"`
		Until          string    `json:"until"`
		Started        string    `json:"started"`
	}{sh.Model, sh.PercentOrDefault(), sh.ToleranceOrDefault(), sh.MaxConcurrencyOrDefault(), sh.Requests, until, sh.Started})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// validateShadow checks spec.shadow.
func (s *Spec) validateShadow() []*FieldError {
	sh := s.Shadow
	if sh == nil {
		return nil
	}
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{field, fmt.Sprintf(format, args...)})
	}
	if strings.TrimSpace(sh.Model) == "" {
		add("spec.shadow.model", "is required: the version to mirror requests to, e.g. diabetes:4")
	}
	if s.OpenAI() {
		add("spec.shadow", "mirrors OIP v2 requests; a deployment with protocol openai cannot have a shadow yet")
	}
	if sh.Percent < 0 || sh.Percent > 100 {
		add("spec.shadow.percent", "must be between 1 and 100, got %d", sh.Percent)
	}
	if sh.MaxConcurrency < 0 || sh.MaxConcurrency > MaxShadowConcurrency {
		add("spec.shadow.maxConcurrency", "must be between 1 and %d, got %d", MaxShadowConcurrency, sh.MaxConcurrency)
	}
	if sh.Requests < 0 {
		add("spec.shadow.requests", "must be 0 (no limit) or more, got %d", sh.Requests)
	}
	if sh.Until != "" {
		if _, err := time.Parse(time.RFC3339, sh.Until); err != nil {
			add("spec.shadow.until", "%q is not an RFC 3339 time such as 2026-12-02T15:04:05Z", sh.Until)
		}
	}
	if t := sh.Tolerance; t != nil {
		for _, b := range []struct {
			name string
			v    float64
		}{{"abs", t.Abs}, {"rel", t.Rel}} {
			if math.IsNaN(b.v) || math.IsInf(b.v, 0) || b.v < 0 {
				add("spec.shadow.tolerance."+b.name, "must be a number of 0 or more, e.g. 1e-5, got %v", b.v)
			}
		}
	}
	return errs
}
