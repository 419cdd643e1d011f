package gateway

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// queueTenants bounds the tenants a deployment's queue depth is labelled
// with: the deepest ones, the rest summed as fairqueue.OtherTenants.
const queueTenants = 10

// QueueCollector exports the fair admission queues of the capped
// deployments in routes (Route.Queue), read when scraped:
// ebb_gateway_queue_depth{deployment,tenant} (requests waiting for a slot,
// for the queueTenants deepest tenants and the rest together),
// ebb_gateway_queue_in_flight{deployment} and
// ebb_gateway_queue_capacity{deployment}.
type QueueCollector struct {
	routes routeLister

	depth, inFlight, capacity *prometheus.Desc
}

var _ prometheus.Collector = (*QueueCollector)(nil)

// NewQueueCollector returns the collector of routes' queues; register it.
func NewQueueCollector(routes routeLister) *QueueCollector {
	return &QueueCollector{
		routes:   routes,
		depth:    prometheus.NewDesc("ebb_gateway_queue_depth", "Requests waiting for a slot of a deployment at its spec.scaling.maxConcurrency, by tenant ("+strconv.Itoa(queueTenants)+" deepest; the rest as (other)).", []string{"deployment", "tenant"}, nil),
		inFlight: prometheus.NewDesc("ebb_gateway_queue_in_flight", "Requests holding a slot of a capped deployment.", []string{"deployment"}, nil),
		capacity: prometheus.NewDesc("ebb_gateway_queue_capacity", "Slots of a capped deployment: spec.scaling.maxConcurrency per ready replica.", []string{"deployment"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.inFlight
	ch <- c.capacity
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	for _, rt := range c.routes.All() {
		q := rt.Queue()
		if q == nil {
			continue
		}
		for tenant, n := range q.TenantDepths(queueTenants) {
			ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(n), rt.Deployment, tenant)
		}
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(q.InFlight()), rt.Deployment)
		ch <- prometheus.MustNewConstMetric(c.capacity, prometheus.GaugeValue, float64(q.Capacity()), rt.Deployment)
	}
}
