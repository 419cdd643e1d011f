package core

import (
	"regexp"
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
// where model and alias are valid names (see ValidName). Anything else — a
// file path such as "models/a.json", a URI such as "s3://b/k", a bare name —
// is not a reference and yields false.
func ParseModelRef(s string) (ModelRef, bool) {
	if strings.ContainsAny(s, "/\\.") {
		return ModelRef{}, false
	}
	if name, alias, ok := strings.Cut(s, "@"); ok {
		if !ValidName(name) || !ValidName(alias) {
			return ModelRef{}, false
		}
		return ModelRef{Model: name, Alias: alias}, true
	}
	if name, num, ok := strings.Cut(s, ":"); ok {
		n, err := strconv.Atoi(num)
		if !ValidName(name) || err != nil || n < 1 || num[0] == '+' || num[0] == '0' {
			return ModelRef{}, false
		}
		return ModelRef{Model: name, Version: n}, true
	}
	return ModelRef{}, false
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidName reports whether s is a valid name of a deployment, model or
// alias: a DNS label of at most 63 lowercase letters, digits and '-',
// starting and ending with a letter or digit.
func ValidName(s string) bool { return len(s) <= 63 && nameRE.MatchString(s) }

// OIPVersion returns the name a registry version ("diabetes:3") has in OIP
// v2 paths and metadata, /v2/models/{m}/versions/{v}: its number ("3").
// It returns "" for anything that is not a numbered registry version.
func OIPVersion(version string) string {
	ref, ok := ParseModelRef(version)
	if !ok || ref.Version == 0 {
		return ""
	}
	return strconv.Itoa(ref.Version)
}
