package serving

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/ebb-ml/ebb/internal/serving/core"
)

// Route is a route object (a shard group): a name that clients call as if
// it were a deployment, and that the gateway resolves, request by request,
// to one of several deployments by a rule on a header or an input value
// (region eu → classify-eu, task vision → vision-model), else to a
// default. Each target is an ordinary deployment that scales 0:N on its
// own: once resolved, a request proceeds exactly as a request to its
// target.
//
// A route's name shares the namespace of deployment names at the gateway:
// ebb up refuses a route named as a deployment (and a deployment named as
// a route); in a cluster, where kubectl can create both, the gateway
// prefers the deployment and ignores the route.
//
// +kubebuilder:object:generate=false
type Route struct {
	Name string    `json:"name"`
	Spec RouteSpec `json:"spec"`
	// Generation increases by one on every change to Spec.
	Generation int64     `json:"generation"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// RouteSpec says how a route picks a deployment for a request.
type RouteSpec struct {
	// Match says where a request's value is read.
	Match RouteMatch `json:"match"`
	// Rules map values to deployments; the first whose value equals the
	// request's (exactly, case and all) picks its deployment. Values are
	// unique.
	// +optional
	// +kubebuilder:validation:MaxItems=1000
	// +listType=map
	// +listMapKey=value
	Rules []RouteRule `json:"rules,omitempty"`
	// Default is the deployment of a request whose value no rule has, or
	// that has none; without it such a request is answered 404, naming
	// the route, the value and the values known.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Default string `json:"default,omitempty"`
}

// RouteMatch names where a request's value is read: exactly one of Header
// and Input.
//
// +kubebuilder:validation:XValidation:rule="has(self.header) != has(self.input)",message="give exactly one of header or input"
type RouteMatch struct {
	// Header is an HTTP header (gRPC: the metadata key, in lower case)
	// whose value is matched, e.g. X-Region.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Header string `json:"header,omitempty"`
	// Input is the name of an OIP v2 input tensor whose first element, as
	// text (a number as written, a string unquoted), is matched, e.g.
	// task. For an OpenAI request it is a top-level field of the JSON
	// body.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Input string `json:"input,omitempty"`
}

// RouteRule sends the requests whose value is Value to Deployment.
type RouteRule struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Value string `json:"value"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Deployment string `json:"deployment"`
}

// Bounds of a RouteSpec.
const (
	MaxRouteRules      = 1000
	MaxRouteValueBytes = 1024
)

// KeyName says, for a message, where the route reads a request's value:
// `header X-Region` or `input "task"`.
func (m RouteMatch) KeyName() string {
	if m.Header != "" {
		return "header " + m.Header
	}
	return "input " + strconv.Quote(m.Input)
}

// Target returns the deployment that the route sends a request to, given
// the request's value (found false when the request has none): the rule's
// for that value, else the default; false when there is neither.
func (s *RouteSpec) Target(value string, found bool) (string, bool) {
	if found {
		for _, r := range s.Rules {
			if r.Value == value {
				return r.Deployment, true
			}
		}
	}
	return s.Default, s.Default != ""
}

// Values lists the values of the route's rules, sorted.
func (s *RouteSpec) Values() []string {
	out := make([]string, len(s.Rules))
	for i, r := range s.Rules {
		out[i] = r.Value
	}
	slices.Sort(out)
	return out
}

// Deployments lists the deployments the route may send requests to, its
// default included, sorted and without repeats.
func (s *RouteSpec) Deployments() []string {
	out := make([]string, 0, len(s.Rules)+1)
	for _, r := range s.Rules {
		out = append(out, r.Deployment)
	}
	if s.Default != "" {
		out = append(out, s.Default)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Validate checks the route's name and spec, returning a
// *RouteValidationError that lists every problem.
func (r *Route) Validate() error {
	var errs []*FieldError
	if err := ValidateName(r.Name); err != nil {
		errs = append(errs, err.(*FieldError))
	}
	errs = append(errs, r.Spec.validate(r.Name)...)
	if len(errs) > 0 {
		return &RouteValidationError{Errors: errs}
	}
	return nil
}

// RouteValidationError collects every field error of a route.
//
// +kubebuilder:object:generate=false
type RouteValidationError struct {
	Errors []*FieldError
}

func (e *RouteValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		parts[i] = fe.Error()
	}
	return "invalid route: " + strings.Join(parts, "; ")
}

// validate checks s for the route named name ("" when unknown).
func (s *RouteSpec) validate(name string) []*FieldError {
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{field, fmt.Sprintf(format, args...)})
	}
	m := s.Match
	switch {
	case (m.Header == "") == (m.Input == ""):
		add("spec.match", `needs exactly one of header (e.g. {"header": "X-Region"}) or input (an input tensor, e.g. {"input": "task"})`)
	case m.Header != "" && len(m.Header) > maxRoutingKeyName:
		add("spec.match.header", "is %d bytes long; at most %d are allowed", len(m.Header), maxRoutingKeyName)
	case m.Header != "" && !validHeaderName(m.Header):
		add("spec.match.header", "%q is not an HTTP header name: give letters, digits and !#$%%&'*+-.^_`|~ only, e.g. X-Region", m.Header)
	case m.Input != "" && len(m.Input) > maxRoutingKeyName:
		add("spec.match.input", "is %d bytes long; at most %d are allowed", len(m.Input), maxRoutingKeyName)
	case m.Input != "" && (strings.TrimSpace(m.Input) != m.Input || strings.ContainsFunc(m.Input, unicode.IsControl)):
		add("spec.match.input", "%q has spaces around it or control characters: give the input tensor's name", m.Input)
	}
	if len(s.Rules) == 0 && s.Default == "" {
		add("spec", "a route needs at least one rule (spec.rules) or a default deployment (spec.default)")
	}
	if len(s.Rules) > MaxRouteRules {
		add("spec.rules", "has %d rules; at most %d are allowed", len(s.Rules), MaxRouteRules)
	}
	seen := make(map[string]int, len(s.Rules))
	for i, r := range s.Rules {
		field := fmt.Sprintf("spec.rules[%d]", i)
		switch {
		case r.Value == "":
			add(field+".value", "is required: a request without a value goes to spec.default")
		case len(r.Value) > MaxRouteValueBytes:
			add(field+".value", "is %d bytes long; at most %d are allowed", len(r.Value), MaxRouteValueBytes)
		default:
			if j, ok := seen[r.Value]; ok {
				add(field+".value", "%q is the value of spec.rules[%d] too: values must be unique", r.Value, j)
			} else {
				seen[r.Value] = i
			}
		}
		checkTarget(add, field+".deployment", r.Deployment, name)
	}
	if s.Default != "" {
		checkTarget(add, "spec.default", s.Default, name)
	}
	return errs
}

// checkTarget checks a deployment a route sends requests to.
func checkTarget(add func(field, format string, args ...any), field, target, route string) {
	switch {
	case target == "":
		add(field, "is required: name the deployment")
	case !core.ValidName(target):
		add(field, "%q is not a deployment name: at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit", target)
	case target == route:
		add(field, "%q is the route itself: name a deployment", target)
	}
}
