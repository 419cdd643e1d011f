package serving

import (
	"fmt"
	"math"
	"strings"
	"unicode"
)

// Routing says how the gateway picks, among a deployment's ready replicas,
// the one that serves a request. None means policy leastOutstanding.
type Routing struct {
	// Policy is leastOutstanding (the default: the less loaded of two
	// replicas drawn at random), consistentHash (requests with the same
	// key reach the same replica while its load stays within loadFactor
	// of the mean) or prefix (consistentHash on the leading prefixBytes
	// of an LLM prompt, so that a shared prefix finds its KV cache warm).
	// +optional
	// +kubebuilder:validation:Enum=leastOutstanding;consistentHash;prefix
	Policy string `json:"policy,omitempty"`
	// Key says where a request's routing key is read: required for
	// consistentHash; for prefix, a header to take the prefix from
	// instead of the prompt.
	// +optional
	Key *RoutingKey `json:"key,omitempty"`
	// LoadFactor bounds, for consistentHash and prefix, the requests in
	// flight on the replica a key maps to: above loadFactor × the mean of
	// the replicas (rounded up, counting the new request), the request
	// goes to another replica. Above 1 and at most 10; default 1.25.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:ExclusiveMinimum=true
	// +kubebuilder:validation:Maximum=10
	LoadFactor float64 `json:"loadFactor,omitempty"`
	// PrefixBytes is, for prefix, how many leading bytes of the prompt
	// make the key. Default 256.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65536
	PrefixBytes int32 `json:"prefixBytes,omitempty"`
	// MissingKey says what happens, for consistentHash and prefix, to a
	// request without the key: leastOutstanding (the default: it is
	// routed as if the deployment had no routing) or reject (400, naming
	// the key).
	// +optional
	// +kubebuilder:validation:Enum=leastOutstanding;reject
	MissingKey string `json:"missingKey,omitempty"`
}

// What a Routing does with a request without its key.
const (
	MissingKeyLeastOutstanding = "leastOutstanding"
	MissingKeyReject           = "reject"
)

// RejectsMissingKey reports whether a request without the routing key
// gets 400 rather than least-outstanding routing.
func (r *Routing) RejectsMissingKey() bool { return r != nil && r.MissingKey == MissingKeyReject }

// KeyName says, for an error, where r reads a request's key.
func (r *Routing) KeyName() string {
	switch {
	case r == nil:
		return ""
	case r.Key != nil && r.Key.Header != "":
		return "header " + r.Key.Header
	case r.Key != nil && r.Key.Input != "":
		return "input tensor " + r.Key.Input
	}
	return "prompt"
}

// RoutingKey names where a request's routing key is read: exactly one of
// Header and Input.
type RoutingKey struct {
	// Header is an HTTP header (gRPC: the metadata key, in lower case)
	// whose value is the key, e.g. X-Session.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Header string `json:"header,omitempty"`
	// Input is the name of an OIP v2 input tensor whose first element is
	// the key, e.g. user_id.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Input string `json:"input,omitempty"`
}

// Routing policies.
const (
	RoutingLeastOutstanding = "leastOutstanding"
	RoutingConsistentHash   = "consistentHash"
	RoutingPrefix           = "prefix"
)

// Defaults and bounds of a Routing.
const (
	DefaultLoadFactor  = 1.25
	MaxLoadFactor      = 10
	DefaultPrefixBytes = 256
	MaxPrefixBytes     = 65536
	maxRoutingKeyName  = 256
)

// RoutingPolicies lists the policies a Routing may name.
var RoutingPolicies = []string{RoutingLeastOutstanding, RoutingConsistentHash, RoutingPrefix}

// PolicyOrDefault is the routing policy of the spec: leastOutstanding when
// it has no routing or names no policy.
func (r *Routing) PolicyOrDefault() string {
	if r == nil || r.Policy == "" {
		return RoutingLeastOutstanding
	}
	return r.Policy
}

// LoadFactorOrDefault is the bound on a replica's load relative to the
// mean, for consistentHash and prefix.
func (r *Routing) LoadFactorOrDefault() float64 {
	if r == nil || r.LoadFactor == 0 {
		return DefaultLoadFactor
	}
	return r.LoadFactor
}

// PrefixBytesOrDefault is the length of the prompt prefix hashed by policy
// prefix.
func (r *Routing) PrefixBytesOrDefault() int {
	if r == nil || r.PrefixBytes == 0 {
		return DefaultPrefixBytes
	}
	return int(r.PrefixBytes)
}

// validateRouting checks spec.routing.
func (s *Spec) validateRouting() []*FieldError {
	r := s.Routing
	if r == nil {
		return nil
	}
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{field, fmt.Sprintf(format, args...)})
	}
	policy := r.PolicyOrDefault()
	hashed := policy == RoutingConsistentHash || policy == RoutingPrefix
	known := hashed || policy == RoutingLeastOutstanding
	switch policy {
	case RoutingLeastOutstanding:
		if r.Key != nil {
			add("spec.routing.key", "is only for policy consistentHash or prefix, not %s: remove it", policy)
		}
	case RoutingConsistentHash:
		if r.Key == nil || (r.Key.Header == "") == (r.Key.Input == "") {
			add("spec.routing.key", `policy consistentHash needs exactly one of header (e.g. {"header": "X-Session"}) or input (an input tensor, e.g. {"input": "user_id"})`)
		} else if r.Key.Input != "" && s.OpenAI() {
			add("spec.routing.key.input", "names an OIP v2 input tensor; a deployment with protocol openai has none: use header")
		}
	case RoutingPrefix:
		switch {
		case r.Key != nil && r.Key.Input != "":
			add("spec.routing.key.input", "is not for policy prefix, which hashes the prompt's prefix, or a header's: remove it")
		case (r.Key == nil || r.Key.Header == "") && !s.OpenAI():
			add("spec.routing.key", "policy prefix reads the prompt of OpenAI requests: give protocol openai, or key.header to take the prefix from")
		}
	default:
		add("spec.routing.policy", "unknown policy %q: use one of %s", r.Policy, strings.Join(RoutingPolicies, ", "))
	}
	if k := r.Key; k != nil {
		if k.Header != "" && !validHeaderName(k.Header) {
			add("spec.routing.key.header", "%q is not an HTTP header name: give letters, digits and !#$%%&'*+-.^_`|~ only, e.g. X-Session", k.Header)
		} else if len(k.Header) > maxRoutingKeyName {
			add("spec.routing.key.header", "is %d bytes long; at most %d are allowed", len(k.Header), maxRoutingKeyName)
		}
		if in := k.Input; in != "" {
			if len(in) > maxRoutingKeyName {
				add("spec.routing.key.input", "is %d bytes long; at most %d are allowed", len(in), maxRoutingKeyName)
			} else if strings.TrimSpace(in) != in || strings.ContainsFunc(in, unicode.IsControl) {
				add("spec.routing.key.input", "%q has spaces around it or control characters: give the input tensor's name", in)
			}
		}
	}
	if lf := r.LoadFactor; lf != 0 {
		switch {
		case known && !hashed:
			add("spec.routing.loadFactor", "is only for policy consistentHash or prefix, not %s: remove it", policy)
		case math.IsNaN(lf) || lf <= 1 || lf > MaxLoadFactor:
			add("spec.routing.loadFactor", "must be above 1 and at most %d, e.g. %g, got %v", MaxLoadFactor, DefaultLoadFactor, lf)
		}
	}
	switch r.MissingKey {
	case "", MissingKeyLeastOutstanding:
	case MissingKeyReject:
		if known && !hashed {
			add("spec.routing.missingKey", "is only for policy consistentHash or prefix, not %s: remove it", policy)
		}
	default:
		add("spec.routing.missingKey", "unknown value %q: use leastOutstanding (route a request without the key as if there were no routing) or reject (answer it 400)", r.MissingKey)
	}
	if pb := r.PrefixBytes; pb != 0 {
		switch {
		case known && policy != RoutingPrefix:
			add("spec.routing.prefixBytes", "is only for policy prefix, not %s: remove it", policy)
		case pb < 1 || pb > MaxPrefixBytes:
			add("spec.routing.prefixBytes", "must be between 1 and %d, got %d", MaxPrefixBytes, pb)
		}
	}
	return errs
}

// validHeaderName reports whether name is an HTTP field name: an RFC 7230
// token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := range len(name) {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
