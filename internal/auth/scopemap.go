package auth

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// ScopeMap maps the values of an OIDC token's claim (its groups or roles)
// to ebb scopes. The key AnyValue maps every token of the issuer, whatever
// its claim holds.
type ScopeMap map[string][]string

// AnyValue is the ScopeMap key that matches every valid token of the
// issuer, with or without the claim.
const AnyValue = "*"

// ParseScopeMap parses mapping entries, each "VALUE=SCOPE[+SCOPE...]";
// an entry may hold several separated by commas, so
//
//	ml-admins=admin,ml-deployers=deploy+models:write,team-fraud=predict:fraud-*
//
// maps group ml-admins to admin, ml-deployers to deploy and models:write,
// and team-fraud to predict:fraud-*. VALUE is matched exactly (Keycloak's
// full group paths look like "/ml-admins"); "*" matches every token. A
// value may appear in several entries: its scopes add up. Every scope is
// checked with ValidateScope.
func ParseScopeMap(entries []string) (ScopeMap, error) {
	m := ScopeMap{}
	for _, entry := range entries {
		for e := range strings.SplitSeq(entry, ",") {
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			// Scopes never hold "=", so the last one separates; a value may hold some.
			i := strings.LastIndex(e, "=")
			if i < 0 {
				return nil, fmt.Errorf("scope map entry %q: want VALUE=SCOPE[+SCOPE...], such as ml-admins=admin or team-fraud=predict:fraud-*", e)
			}
			value, scopes := strings.TrimSpace(e[:i]), e[i+1:]
			if value == "" {
				return nil, fmt.Errorf("scope map entry %q names no group or role before =", e)
			}
			for s := range strings.SplitSeq(scopes, "+") {
				s = strings.TrimSpace(s)
				if err := ValidateScope(s); err != nil {
					return nil, fmt.Errorf("scope map entry %q: %w", e, err)
				}
				if !slices.Contains(m[value], s) {
					m[value] = append(m[value], s)
				}
			}
		}
	}
	return m, nil
}

// Scopes returns the scopes that values map to, sorted, without
// duplicates; scopes of AnyValue are always included.
func (m ScopeMap) Scopes(values []string) []string {
	var out []string
	for _, v := range append([]string{AnyValue}, values...) {
		for _, s := range m[v] {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Values returns the mapped values, sorted, for messages.
func (m ScopeMap) Values() []string {
	out := make([]string, 0, len(m))
	for v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// String returns the map in the syntax ParseScopeMap reads.
func (m ScopeMap) String() string {
	var b strings.Builder
	for i, v := range m.Values() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(v + "=" + strings.Join(m[v], "+"))
	}
	return b.String()
}

// claimValues returns the strings a token's claim holds. name is a claim
// name, or a dotted path into nested objects ("realm_access.roles", as
// Keycloak puts realm roles) when no top-level claim has the whole name
// (Auth0's "https://example.com/groups" keeps its dots). A list of strings
// is the list; a string is split at spaces (the OAuth "scope" claim). ok
// is false when the claim is absent.
func claimValues(claims map[string]any, name string) (values []string, ok bool, err error) {
	v, ok := claim(claims, name)
	if !ok {
		return nil, false, nil
	}
	switch v := v.(type) {
	case nil:
		return nil, false, nil
	case string:
		return strings.Fields(v), true, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, isStr := e.(string)
			if !isStr {
				return nil, true, fmt.Errorf("claim %q holds a %s in its list; want strings", name, jsonKind(e))
			}
			out = append(out, s)
		}
		return out, true, nil
	}
	return nil, true, fmt.Errorf("claim %q is a %s; want a list of strings or a space-separated string", name, jsonKind(v))
}

// claimString returns the string value of claim name (dotted names reach
// into nested objects); false when absent, empty or not a string.
func claimString(claims map[string]any, name string) (string, bool) {
	v, _ := claim(claims, name)
	s, ok := v.(string)
	return s, ok && s != ""
}

// claim returns the value of claim name: a top-level claim of that exact
// name, or else the dotted path into nested objects.
func claim(claims map[string]any, name string) (any, bool) {
	v, ok := claims[name]
	if !ok {
		var cur any = claims
		for part := range strings.SplitSeq(name, ".") {
			obj, isObj := cur.(map[string]any)
			if !isObj {
				return nil, false
			}
			if cur, ok = obj[part]; !ok {
				return nil, false
			}
		}
		v = cur
	}
	return v, true
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// quoteSome returns up to max values quoted, for a message about a token
// that may carry hundreds of groups.
func quoteSome(values []string, max int) string {
	if len(values) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, v := range values {
		if i == max {
			fmt.Fprintf(&b, " and %d more", len(values)-max)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if len(v) > 64 {
			v = v[:64] + "..."
		}
		fmt.Fprintf(&b, "%q", v)
	}
	return b.String()
}
