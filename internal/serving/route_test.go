package serving

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

func regionRoute() Route {
	return Route{Name: "classify", Spec: RouteSpec{
		Match: RouteMatch{Header: "X-Region"},
		Rules: []RouteRule{
			{Value: "eu", Deployment: "classify-eu"},
			{Value: "us", Deployment: "classify-us"},
		},
		Default: "classify-global",
	}}
}

func TestRouteTarget(t *testing.T) {
	withDefault := regionRoute().Spec
	noDefault := withDefault
	noDefault.Default = ""
	tests := []struct {
		name   string
		spec   RouteSpec
		value  string
		found  bool
		want   string
		wantOK bool
	}{
		{"rule", withDefault, "eu", true, "classify-eu", true},
		{"other rule", withDefault, "us", true, "classify-us", true},
		{"unknown value takes the default", withDefault, "apac", true, "classify-global", true},
		{"no value takes the default", withDefault, "", false, "classify-global", true},
		{"values are exact", withDefault, "EU", true, "classify-global", true},
		{"unknown value without default", noDefault, "apac", true, "", false},
		{"no value without default", noDefault, "", false, "", false},
		{"an empty value found matches no rule", noDefault, "", true, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.spec.Target(tt.value, tt.found)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Target(%q, %v) = %q, %v; want %q, %v", tt.value, tt.found, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestRouteValuesAndDeployments(t *testing.T) {
	s := regionRoute().Spec
	s.Rules = append(s.Rules, RouteRule{Value: "ch", Deployment: "classify-eu"})
	if got, want := s.Values(), []string{"ch", "eu", "us"}; !slices.Equal(got, want) {
		t.Errorf("Values() = %q, want %q", got, want)
	}
	if got, want := s.Deployments(), []string{"classify-eu", "classify-global", "classify-us"}; !slices.Equal(got, want) {
		t.Errorf("Deployments() = %q, want %q", got, want)
	}
}

func TestRouteValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(r *Route)
		want []string // substrings of the error; none: valid
	}{
		{"valid", func(*Route) {}, nil},
		{"input match", func(r *Route) { r.Spec.Match = RouteMatch{Input: "task"} }, nil},
		{"default only", func(r *Route) { r.Spec.Rules = nil }, nil},
		{"rules only", func(r *Route) { r.Spec.Default = "" }, nil},
		{"bad name", func(r *Route) { r.Name = "Classify" }, []string{"name:"}},
		{"no name", func(r *Route) { r.Name = "" }, []string{"name: is required"}},
		{"no match", func(r *Route) { r.Spec.Match = RouteMatch{} }, []string{"spec.match: needs exactly one"}},
		{"both matches", func(r *Route) { r.Spec.Match.Input = "task" }, []string{"spec.match: needs exactly one"}},
		{"bad header", func(r *Route) { r.Spec.Match.Header = "X Region" }, []string{"spec.match.header", "not an HTTP header name"}},
		{"long header", func(r *Route) { r.Spec.Match.Header = strings.Repeat("x", 257) }, []string{"spec.match.header: is 257 bytes"}},
		{"spaced input", func(r *Route) { r.Spec.Match = RouteMatch{Input: " task"} }, []string{"spec.match.input"}},
		{"neither rules nor default", func(r *Route) { r.Spec.Rules, r.Spec.Default = nil, "" }, []string{"at least one rule"}},
		{"duplicate value", func(r *Route) { r.Spec.Rules[1].Value = "eu" }, []string{`spec.rules[1].value: "eu" is the value of spec.rules[0] too`}},
		{"empty value", func(r *Route) { r.Spec.Rules[0].Value = "" }, []string{"spec.rules[0].value: is required"}},
		{"long value", func(r *Route) { r.Spec.Rules[0].Value = strings.Repeat("v", MaxRouteValueBytes+1) }, []string{"spec.rules[0].value: is 1025 bytes"}},
		{"bad target", func(r *Route) { r.Spec.Rules[0].Deployment = "EU_model" }, []string{"spec.rules[0].deployment", "not a deployment name"}},
		{"no target", func(r *Route) { r.Spec.Rules[1].Deployment = "" }, []string{"spec.rules[1].deployment: is required"}},
		{"bad default", func(r *Route) { r.Spec.Default = "a.b" }, []string{"spec.default", "not a deployment name"}},
		{"route to itself", func(r *Route) { r.Spec.Default = "classify" }, []string{"spec.default", "the route itself"}},
		{"too many rules", func(r *Route) {
			r.Spec.Rules = make([]RouteRule, MaxRouteRules+1)
			for i := range r.Spec.Rules {
				r.Spec.Rules[i] = RouteRule{Value: strconv.Itoa(i), Deployment: "d"}
			}
		}, []string{"spec.rules: has 1001 rules"}},
		{"every problem at once", func(r *Route) {
			r.Name = ""
			r.Spec.Match = RouteMatch{}
			r.Spec.Default = "BAD"
		}, []string{"name: is required", "spec.match:", "spec.default"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := regionRoute()
			tt.edit(&r)
			err := r.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error with %q", tt.want)
			}
			if _, ok := err.(*RouteValidationError); !ok {
				t.Errorf("Validate() returned %T, want *RouteValidationError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}
