package limit

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebb-ml/ebb/internal/serving"
)

// TestMetrics checks ebb_tenant_limited_total's labels, and the cap on
// distinct tenants beyond which refusals count as "(other)".
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := New(Options{Metrics: NewMetrics(reg, 2)})
	swap(t, l, 1,
		serving.Limit{Tenant: "*", Rate: 1, Burst: 1},
		serving.Limit{Tenant: "*", Deployment: "d", Concurrency: 1},
	)
	refuse := func(tenant, deployment string, n int) {
		for range n {
			l.Admit(tenant, deployment, t0) // held for ever: the place in flight stays taken
		}
	}
	refuse("a", "x", 3)  // 2 refused for rate, tenant-wide
	refuse("b", "d", 2)  // 1 refused for rate
	refuse("c", "x", 4)  // beyond the cap: 3 refused as (other)
	refuse("d2", "x", 2) // 1 more as (other)
	refuse("a", "x", 1)  // a keeps its label
	l.Swap(nil)
	swap(t, l, 1, serving.Limit{Tenant: "*", Deployment: "d", Concurrency: 1})
	refuse("b", "d", 1) // b's place is still taken: refused for concurrency

	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ebb_tenant_limited_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			got[labels["tenant"]+" "+labels["deployment"]+" "+labels["limit"]] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"a (all) rate":       3,
		"b (all) rate":       1,
		"b d concurrency":    1,
		"(other) (all) rate": 4,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ebb_tenant_limited_total (-want +got):\n%s", diff)
	}
}
