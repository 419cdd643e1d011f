package serving

import "testing"

func TestRoutingDefaults(t *testing.T) {
	tests := []struct {
		name        string
		r           *Routing
		policy      string
		loadFactor  float64
		prefixBytes int
	}{
		{name: "none", r: nil, policy: RoutingLeastOutstanding, loadFactor: DefaultLoadFactor, prefixBytes: DefaultPrefixBytes},
		{name: "empty", r: &Routing{}, policy: RoutingLeastOutstanding, loadFactor: DefaultLoadFactor, prefixBytes: DefaultPrefixBytes},
		{name: "set", r: &Routing{Policy: RoutingPrefix, LoadFactor: 2, PrefixBytes: 64}, policy: RoutingPrefix, loadFactor: 2, prefixBytes: 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.PolicyOrDefault(); got != tt.policy {
				t.Errorf("PolicyOrDefault = %q, want %q", got, tt.policy)
			}
			if got := tt.r.LoadFactorOrDefault(); got != tt.loadFactor {
				t.Errorf("LoadFactorOrDefault = %v, want %v", got, tt.loadFactor)
			}
			if got := tt.r.PrefixBytesOrDefault(); got != tt.prefixBytes {
				t.Errorf("PrefixBytesOrDefault = %d, want %d", got, tt.prefixBytes)
			}
		})
	}
}

func TestValidHeaderName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"X-Session", true},
		{"x-session-id", true},
		{"X_Tenant.ID~1", true},
		{"!#$%&'*+-.^_`|~", true},
		{"", false},
		{"X Session", false},
		{":authority", false},
		{"X-Session\r\n", false},
		{"X-Séance", false},
		{"a/b", false},
		{`"quoted"`, false},
	}
	for _, tt := range tests {
		if got := validHeaderName(tt.name); got != tt.want {
			t.Errorf("validHeaderName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
