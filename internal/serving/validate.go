package serving

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/ebb-ml/ebb/internal/serving/core"
)

// Defaults applied by Default to fields left zero.
const (
	DefaultEngine             = "trees"
	DefaultMaxReplicas        = 4
	DefaultTargetConcurrency  = 8
	DefaultScaleToZeroAfter   = 60 * time.Second
	DefaultStableWindow       = 60 * time.Second
	DefaultPanicWindowPercent = 10
	DefaultPanicThreshold     = 200
)

// MaxReplicasLimit bounds spec.scaling.maxReplicas, spec.replicas and
// spec.coldStart.warmPool: a larger count is a typo or abuse, never a
// deployment one control loop can run (ebb up also caps the replicas of the
// whole host with --max-replicas-total).
const MaxReplicasLimit = 1000

// MaxConcurrencyLimit bounds spec.scaling.maxConcurrency: more requests in
// flight on one replica is a typo, not a cap.
const MaxConcurrencyLimit = 10000

// MaxPythonWorkers bounds spec.python.workers (engine/python.MaxWorkers).
const MaxPythonWorkers = 64

// Engines lists the engine names a Spec may use.
var Engines = []string{"trees", "onnx", "python", "http", "echo"}

// FieldError is a validation failure on one field of a deployment.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// ValidationError collects every field error found in one pass, so a user
// fixes them all at once.
type ValidationError struct {
	Errors []*FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		parts[i] = fe.Error()
	}
	return "invalid deployment: " + strings.Join(parts, "; ")
}

// ValidateName reports whether name is a valid deployment name: a DNS label
// of at most 63 lowercase letters, digits and '-'.
func ValidateName(name string) error {
	if name == "" {
		return &FieldError{"name", "is required"}
	}
	if !core.ValidName(name) {
		return &FieldError{"name", fmt.Sprintf("%q must be at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit", name)}
	}
	return nil
}

// Default fills zero fields of s with defaults. Call it before Validate.
func (s *Spec) Default() {
	if _, isRef := ParseModelRef(s.Model); s.Engine == "" && !isRef {
		// A registry version carries its own engine.
		s.Engine = DefaultEngine
	}
	sc := &s.Scaling
	if sc.MaxReplicas == 0 {
		sc.MaxReplicas = max(DefaultMaxReplicas, sc.MinReplicas)
	}
	if sc.TargetConcurrency == 0 {
		sc.TargetConcurrency = DefaultTargetConcurrency
	}
	if sc.ScaleToZeroAfter.Duration == 0 {
		sc.ScaleToZeroAfter = D(DefaultScaleToZeroAfter)
	}
	if sc.StableWindow.Duration == 0 {
		sc.StableWindow = D(DefaultStableWindow)
	}
	if sc.PanicWindowPercent == 0 {
		sc.PanicWindowPercent = DefaultPanicWindowPercent
	}
	if sc.PanicThreshold == 0 {
		sc.PanicThreshold = DefaultPanicThreshold
	}
}

// Validate checks d's name and spec and returns a *ValidationError listing
// every problem, or nil.
func (d *Deployment) Validate() error {
	var errs []*FieldError
	if err := ValidateName(d.Name); err != nil {
		var fe *FieldError
		errors.As(err, &fe)
		errs = append(errs, fe)
	}
	errs = append(errs, d.Spec.validate()...)
	if len(errs) > 0 {
		return &ValidationError{Errors: errs}
	}
	return nil
}

func (s *Spec) validate() []*FieldError {
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{field, fmt.Sprintf(format, args...)})
	}
	needsModel := s.Engine != "echo" && s.Engine != "http"
	if strings.TrimSpace(s.Model) == "" && needsModel {
		add("spec.model", "is required: give the model artifact path, e.g. examples/diabetes/model.json")
	}
	switch s.Engine {
	case "python":
		if s.Python == nil || strings.TrimSpace(s.Python.Class) == "" {
			add("spec.python.class", `is required for engine python: give "FILE.py:ClassName" or "module:ClassName"`)
		} else if !strings.Contains(s.Python.Class, ":") {
			add("spec.python.class", `%q must be "FILE.py:ClassName" or "module:ClassName"`, s.Python.Class)
		}
		if s.Python != nil && (s.Python.Workers < 0 || s.Python.Workers > MaxPythonWorkers) {
			add("spec.python.workers", "%d is out of range: give 1 to %d worker processes per replica (0 or none means 1)", s.Python.Workers, MaxPythonWorkers)
		}
	case "http":
		if (len(s.Command) == 0) == (s.URL == "") {
			add("spec", "engine http needs exactly one of command (an OIP v2 server started with $PORT) or url (a running one)")
		}
		if s.URL != "" && !strings.HasPrefix(s.URL, "http://") && !strings.HasPrefix(s.URL, "https://") {
			add("spec.url", "%q must start with http:// or https://", s.URL)
		}
	}
	if s.Engine != "python" && s.Python != nil {
		add("spec.python", "is only for engine python, not %q", s.Engine)
	}
	if s.Engine != "http" && (len(s.Command) > 0 || s.URL != "") {
		add("spec", "command and url are only for engine http, not %q", s.Engine)
	}
	errs = append(errs, s.validateUpstream()...)
	errs = append(errs, s.validateTraffic()...)
	errs = append(errs, s.validateShadow()...)
	errs = append(errs, s.validateRouting()...)
	errs = append(errs, s.validateSchedule()...)
	errs = append(errs, s.validateScatter()...)
	errs = append(errs, s.validatePredictionLog()...)
	errs = append(errs, s.validatePooled()...) // pool.go
	for k := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			add("spec.env", "%q is not a valid environment variable name", k)
		}
	}
	if b := s.Batching; b != nil {
		if b.MaxBatchSize < 1 {
			add("spec.batching.maxBatchSize", "must be at least 1, got %d", b.MaxBatchSize)
		}
		for _, p := range b.PreferredBatchSizes {
			if p < 1 || p > b.MaxBatchSize {
				add("spec.batching.preferredBatchSizes", "%d is outside 1..maxBatchSize (%d)", p, b.MaxBatchSize)
			}
		}
		if b.MaxQueueDelay.Duration < 0 || b.MaxQueueDelay.Duration > 10*time.Second {
			add("spec.batching.maxQueueDelay", "must be between 0 and 10s, got %s", b.MaxQueueDelay)
		}
	}
	_, isRef := ParseModelRef(s.Model)
	known := s.Engine == "" && isRef
	for _, e := range Engines {
		known = known || e == s.Engine
	}
	if !known {
		add("spec.engine", "unknown engine %q: use one of %s", s.Engine, strings.Join(Engines, ", "))
	}
	if s.Replicas != nil && *s.Replicas < 0 {
		add("spec.replicas", "must be 0 or more, got %d: remove it to autoscale", *s.Replicas)
	} else if s.Replicas != nil && *s.Replicas > MaxReplicasLimit {
		add("spec.replicas", "must be at most %d, got %d", MaxReplicasLimit, *s.Replicas)
	}
	if s.ColdStart.WarmPool < 0 {
		add("spec.coldStart.warmPool", "must be 0 or more, got %d", s.ColdStart.WarmPool)
	} else if s.ColdStart.WarmPool > MaxReplicasLimit {
		add("spec.coldStart.warmPool", "must be at most %d, got %d", MaxReplicasLimit, s.ColdStart.WarmPool)
	}
	sc := s.Scaling
	if sc.MinReplicas < 0 {
		add("spec.scaling.minReplicas", "must be 0 or more, got %d", sc.MinReplicas)
	}
	if sc.MaxReplicas < 1 {
		add("spec.scaling.maxReplicas", "must be at least 1, got %d", sc.MaxReplicas)
	} else if sc.MaxReplicas > MaxReplicasLimit {
		add("spec.scaling.maxReplicas", "must be at most %d, got %d: ask for what one deployment can use", MaxReplicasLimit, sc.MaxReplicas)
	}
	if sc.MinReplicas > sc.MaxReplicas {
		add("spec.scaling", "minReplicas (%d) must not exceed maxReplicas (%d)", sc.MinReplicas, sc.MaxReplicas)
	}
	if sc.TargetConcurrency <= 0 {
		add("spec.scaling.targetConcurrency", "must be greater than 0, got %g", sc.TargetConcurrency)
	}
	if sc.MaxConcurrency < 0 || sc.MaxConcurrency > MaxConcurrencyLimit {
		add("spec.scaling.maxConcurrency", "must be between 0 (no cap) and %d, got %d", MaxConcurrencyLimit, sc.MaxConcurrency)
	}
	if sc.ScaleToZeroAfter.Duration < 0 {
		add("spec.scaling.scaleToZeroAfter", "must not be negative, got %s", sc.ScaleToZeroAfter)
	}
	if sc.StableWindow.Duration < 6*time.Second || sc.StableWindow.Duration > time.Hour {
		add("spec.scaling.stableWindow", "must be between 6s and 1h, got %s", sc.StableWindow)
	}
	if sc.PanicWindowPercent < 1 || sc.PanicWindowPercent > 100 {
		add("spec.scaling.panicWindowPercent", "must be between 1 and 100, got %g", sc.PanicWindowPercent)
	}
	if sc.PanicThreshold <= 100 {
		add("spec.scaling.panicThresholdPercent", "must be above 100, got %g", sc.PanicThreshold)
	}
	return errs
}

// maxUpstreamModel bounds spec.upstreamModel.
const maxUpstreamModel = 256

// validateUpstream checks the fields that say how engine http reaches the
// server behind it: upstreamModel and protocol.
func (s *Spec) validateUpstream() []*FieldError {
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{field, fmt.Sprintf(format, args...)})
	}
	switch s.Protocol {
	case "", ProtocolOIP:
	case ProtocolOpenAI:
		if s.Engine != "http" {
			add("spec.protocol", "openai is only for engine http (a server such as vLLM started with command, or at url), not %q", s.Engine)
		}
	default:
		add("spec.protocol", "unknown protocol %q: use oip (the default) or openai", s.Protocol)
	}
	if s.Protocol == ProtocolOIP && s.Engine != "http" {
		add("spec.protocol", "is only for engine http, not %q: remove it", s.Engine)
	}
	if m := s.UpstreamModel; m != "" {
		switch {
		case s.Engine != "http":
			add("spec.upstreamModel", "is only for engine http, not %q: remove it", s.Engine)
		case len(m) > maxUpstreamModel:
			add("spec.upstreamModel", "is %d bytes long; at most %d are allowed", len(m), maxUpstreamModel)
		case strings.TrimSpace(m) != m || strings.ContainsFunc(m, unicode.IsControl):
			add("spec.upstreamModel", "%q has spaces around it or control characters: give the model name the server behind uses", m)
		case s.Protocol != ProtocolOpenAI && (strings.Contains(m, "/") || m == "." || m == ".."):
			add("spec.upstreamModel", "%q cannot name an OIP v2 model (it goes in the path /v2/models/{name}): drop the '/'", m)
		}
	}
	return errs
}
