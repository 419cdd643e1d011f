package serving

import (
	"math"
	"strings"
	"testing"
)

func TestLimitValidate(t *testing.T) {
	tests := []struct {
		name  string
		limit Limit
		want  []string // each in the error; none for valid
	}{
		{"rate and burst", Limit{Tenant: "acme", Rate: 10, Burst: 20}, nil},
		{"a deployment's concurrency", Limit{Tenant: "acme", Deployment: "diabetes", Concurrency: 5, Share: 3}, nil},
		{"the default", Limit{Tenant: "*", Rate: 0.5, Burst: 1}, nil},
		{"no bound: an exemption", Limit{Tenant: "free"}, nil},
		{"printable tenant", Limit{Tenant: `team/eu@x:"q"~`, Concurrency: 1}, nil},
		{"bounds at their most", Limit{Tenant: strings.Repeat("t", MaxTenantLen), Rate: MaxLimitRate, Burst: MaxLimitBurst, Concurrency: MaxLimitConcurrency, Share: MaxLimitShare}, nil},
		{"no tenant", Limit{Rate: 1, Burst: 1}, []string{"tenant: is required"}},
		{"tenant too long", Limit{Tenant: strings.Repeat("t", MaxTenantLen+1)}, []string{"tenant: is 129 characters long"}},
		{"tenant with a space", Limit{Tenant: "a b"}, []string{`tenant: "a b" is not a tenant name`}},
		{"tenant with a control character", Limit{Tenant: "a\tb"}, []string{"is not a tenant name"}},
		{"tenant not ASCII", Limit{Tenant: "café"}, []string{"is not a tenant name"}},
		{"tenant ..", Limit{Tenant: ".."}, []string{"cannot be part of a URL"}},
		{"bad deployment", Limit{Tenant: "a", Deployment: "Diabetes"}, []string{`deployment: "Diabetes" is not a deployment name`}},
		{"negative rate", Limit{Tenant: "a", Rate: -1}, []string{"rate: is -1"}},
		{"rate too slow", Limit{Tenant: "a", Rate: 0.0001, Burst: 1}, []string{"rate: is 0.0001 requests/s; at least 0.001"}},
		{"rate too fast", Limit{Tenant: "a", Rate: 2e6, Burst: 1}, []string{"rate: is 2000000 requests/s; at most 1000000"}},
		{"rate NaN", Limit{Tenant: "a", Rate: math.NaN()}, []string{"rate: must be a number"}},
		{"burst without rate", Limit{Tenant: "a", Burst: 3}, []string{"burst: is set without a rate"}},
		{"negative burst", Limit{Tenant: "a", Rate: 1, Burst: -1}, []string{"burst: is -1"}},
		{"burst too big", Limit{Tenant: "a", Rate: 1, Burst: MaxLimitBurst + 1}, []string{"burst: is 1000001; at most"}},
		{"negative concurrency", Limit{Tenant: "a", Concurrency: -1}, []string{"concurrency: is -1"}},
		{"concurrency too big", Limit{Tenant: "a", Concurrency: MaxLimitConcurrency + 1}, []string{"concurrency: is 1000001"}},
		{"share out of range", Limit{Tenant: "a", Share: MaxLimitShare + 1}, []string{"share: is 1001"}},
		{"every problem at once", Limit{Tenant: "", Deployment: "X", Rate: -1, Concurrency: -1, Share: -1},
			[]string{"invalid limit: tenant:", "deployment:", "rate:", "concurrency:", "share:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.limit.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if _, ok := err.(*LimitValidationError); !ok {
				t.Fatalf("Validate = %v (%T), want a *LimitValidationError", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestLimitDefaultAndDescribe(t *testing.T) {
	tests := []struct {
		in        Limit
		wantBurst int32
		describe  string
	}{
		{Limit{Rate: 10}, 10, "10 requests/s (burst 10)"},
		{Limit{Rate: 2.5}, 3, "2.5 requests/s (burst 3)"},
		{Limit{Rate: 0.1}, 1, "0.1 requests/s (burst 1)"},
		{Limit{Rate: 10, Burst: 20, Concurrency: 5}, 20, "10 requests/s (burst 20), 5 in flight"},
		{Limit{Concurrency: 5}, 0, "5 in flight"},
		{Limit{}, 0, "no bound"},
	}
	for _, tt := range tests {
		l := tt.in
		l.Default()
		if l.Burst != tt.wantBurst || l.Describe() != tt.describe {
			t.Errorf("%+v defaulted: burst %d, %q; want %d, %q", tt.in, l.Burst, l.Describe(), tt.wantBurst, tt.describe)
		}
	}
	for _, k := range []struct {
		key  LimitKey
		want string
	}{
		{LimitKey{"acme", ""}, `tenant "acme"`},
		{LimitKey{"acme", "d"}, `tenant "acme" on deployment "d"`},
		{LimitKey{"*", "d"}, `every tenant (default) on deployment "d"`},
	} {
		if got := k.key.String(); got != k.want {
			t.Errorf("%#v.String() = %q, want %q", k.key, got, k.want)
		}
	}
}
