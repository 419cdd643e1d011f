package limit

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values of ebb_tenant_limited_total beside tenants' and
// deployments' names.
const (
	// OtherTenant counts the refusals of tenants beyond the cap on
	// distinct tenant labels.
	OtherTenant = "(other)"
	// AllDeployments is the deployment of a tenant-wide limit.
	AllDeployments = "(all)"
)

// DefaultMaxTenantLabels is the cap on distinct tenant labels when
// NewMetrics is given none.
const DefaultMaxTenantLabels = 1000

// Metrics counts refused requests as ebb_tenant_limited_total{tenant,
// deployment, limit}: deployment is the refusing limit's (AllDeployments
// for a tenant-wide one), limit is "rate" or "concurrency". Label
// cardinality is bounded: the first maxTenants tenants refused get labels
// of their own, for the life of the process; the rest count as
// OtherTenant. Deployments come from the limits set, which an admin
// bounds. A nil *Metrics counts nothing.
type Metrics struct {
	limited    *prometheus.CounterVec
	maxTenants int

	// mu guards counters and tenants.
	mu       sync.RWMutex
	counters map[metricKey]prometheus.Counter
	tenants  map[string]bool // tenants with labels of their own
}

type metricKey struct {
	tenant, deployment, kind string
}

// NewMetrics registers ebb_tenant_limited_total with reg; maxTenants caps
// the distinct tenant labels (0: DefaultMaxTenantLabels).
func NewMetrics(reg prometheus.Registerer, maxTenants int) *Metrics {
	if maxTenants <= 0 {
		maxTenants = DefaultMaxTenantLabels
	}
	m := &Metrics{
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_tenant_limited_total",
			Help: "Requests refused with 429 by a tenant limit, by tenant (\"(other)\" beyond the first distinct tenants), the limit's deployment (\"(all)\" for a tenant-wide limit) and limit: rate (the token bucket was empty) or concurrency (too many requests in flight).",
		}, []string{"tenant", "deployment", "limit"}),
		maxTenants: maxTenants,
		counters:   make(map[metricKey]prometheus.Counter),
		tenants:    make(map[string]bool),
	}
	reg.MustRegister(m.limited)
	return m
}

// refused counts r.
func (m *Metrics) refused(r Refusal) {
	if m == nil {
		return
	}
	k := metricKey{r.Tenant, r.Limit.Deployment, r.Kind}
	if k.deployment == "" {
		k.deployment = AllDeployments
	}
	m.mu.RLock()
	c := m.counters[k]
	if c == nil && !m.tenants[k.tenant] && len(m.tenants) >= m.maxTenants {
		k.tenant = OtherTenant
		c = m.counters[k]
	}
	m.mu.RUnlock()
	if c == nil {
		c = m.counter(k)
	}
	c.Inc()
}

// counter returns k's counter, made on first use; a tenant beyond the cap
// counts as OtherTenant.
func (m *Metrics) counter(k metricKey) prometheus.Counter {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k.tenant != OtherTenant && !m.tenants[k.tenant] {
		if len(m.tenants) >= m.maxTenants {
			k.tenant = OtherTenant
		} else {
			m.tenants[k.tenant] = true
		}
	}
	c := m.counters[k]
	if c == nil {
		c = m.limited.WithLabelValues(k.tenant, k.deployment, k.kind)
		m.counters[k] = c
	}
	return c
}
