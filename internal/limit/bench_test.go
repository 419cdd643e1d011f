package limit

import (
	"fmt"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// BenchmarkAdmit measures Admit and Release on the request path, with
// 1000 tenants' limits in the table but where said: a tenant no limit
// binds, a bound tenant (a tenant-wide and a deployment's limit, both
// with a rate and a concurrency bound), a tenant bound by the defaults,
// a refused tenant, and bound tenants on every CPU at once.
func BenchmarkAdmit(b *testing.B) {
	var many []serving.Limit
	for i := range 1000 {
		many = append(many, serving.Limit{Tenant: fmt.Sprintf("tenant-%d", i), Rate: 1e6, Burst: 1e6, Concurrency: 1_000_000})
	}
	bound := append(many[:len(many):len(many)],
		serving.Limit{Tenant: "acme", Rate: 1e6, Burst: 1e6, Concurrency: 1_000_000},
		serving.Limit{Tenant: "acme", Deployment: "d", Rate: 1e6, Burst: 1e6, Concurrency: 1_000_000},
		serving.Limit{Tenant: "slow", Rate: serving.MinLimitRate, Burst: 1},
	)
	defaults := []serving.Limit{
		{Tenant: "*", Rate: 1e6, Burst: 1e6, Concurrency: 1_000_000},
		{Tenant: "*", Deployment: "d", Concurrency: 1_000_000},
	}
	tests := []struct {
		name   string
		limits []serving.Limit
		tenant string
	}{
		{"no limits", nil, "acme"},
		{"tenant without a limit", many, "nobody"},
		{"bound tenant", bound, "acme"},
		{"default tenant", defaults, "acme"},
		{"refused tenant", bound, "slow"},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			l := newLimiter(b, tt.limits...)
			now := t0
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(time.Microsecond)
				tk, _, _ := l.Admit(tt.tenant, "d", now)
				tk.Release()
			}
		})
	}
	b.Run("bound tenants in parallel", func(b *testing.B) {
		l := newLimiter(b, many...)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			tenant := fmt.Sprintf("tenant-%d", time.Now().UnixNano()%1000)
			for pb.Next() {
				tk, _, _ := l.Admit(tenant, "d", time.Now())
				tk.Release()
			}
		})
	})
}
