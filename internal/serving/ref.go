package serving

import (
	"strconv"
	"strings"
)

// ModelRef names a version of a model in the registry: "diabetes:3" (a
// version number) or "diabetes@champion" (whatever the alias points at).
// A deployment's spec.model is either a ModelRef or an artifact path.
type ModelRef struct {
	Model string
	// Version is set for "model:N"; 0 otherwise.
	Version int
	// Alias is set for "model@alias"; empty otherwise.
	Alias string
}

// String returns "model:N" or "model@alias".
func (r ModelRef) String() string {
	if r.Alias != "" {
		return r.Model + "@" + r.Alias
	}
	return r.Model + ":" + strconv.Itoa(r.Version)
}

// ParseModelRef parses "model@alias" or "model:N" (N a positive integer),
// where model and alias are valid names (see ValidateName). Anything else — a
// file path such as "models/a.json", a URI such as "s3://b/k", a bare name —
// is not a reference and yields false.
func ParseModelRef(s string) (ModelRef, bool) {
	if strings.ContainsAny(s, "/\\.") {
		return ModelRef{}, false
	}
	if name, alias, ok := strings.Cut(s, "@"); ok {
		if !validName(name) || !validName(alias) {
			return ModelRef{}, false
		}
		return ModelRef{Model: name, Alias: alias}, true
	}
	if name, num, ok := strings.Cut(s, ":"); ok {
		n, err := strconv.Atoi(num)
		if !validName(name) || err != nil || n < 1 || num[0] == '+' || num[0] == '0' {
			return ModelRef{}, false
		}
		return ModelRef{Model: name, Version: n}, true
	}
	return ModelRef{}, false
}

func validName(s string) bool { return len(s) <= 63 && nameRE.MatchString(s) }
