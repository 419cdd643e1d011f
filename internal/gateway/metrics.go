package gateway

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
	retries  *prometheus.CounterVec
	limited  *prometheus.CounterVec // ebb_gateway_limited_total (limits.go)

	// byDeployment caches each deployment's series (*series), so the hot
	// path does no label hashing.
	byDeployment sync.Map
}

// series are one deployment's most used metric children.
type series struct {
	m          *Metrics
	deployment string
	inFlight   prometheus.Gauge
	latency    prometheus.Observer
	ok         prometheus.Counter // code 200
}

func (m *Metrics) series(deployment string) *series {
	if v, ok := m.byDeployment.Load(deployment); ok {
		return v.(*series)
	}
	s := &series{
		m:          m,
		deployment: deployment,
		inFlight:   m.inFlight.WithLabelValues(deployment),
		latency:    m.latency.WithLabelValues(deployment),
		ok:         m.requests.WithLabelValues(deployment, "200"),
	}
	v, _ := m.byDeployment.LoadOrStore(deployment, s)
	return v.(*series)
}

// NewMetrics creates the gateway's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_gateway_requests_total",
			Help: "Inference requests answered, by deployment and HTTP status code.",
		}, []string{"deployment", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ebb_gateway_request_duration_seconds",
			Help:    "Time from request arrival to response, including any hold while the deployment was cold.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"deployment"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ebb_gateway_requests_in_flight",
			Help: "Requests being served or held, by deployment.",
		}, []string{"deployment"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_gateway_retries_total",
			Help: "Requests re-sent to another replica after one failed before answering.",
		}, []string{"deployment"}),
	}
	reg.MustRegister(m.requests, m.latency, m.inFlight, m.retries)
	m.limited = newLimited(reg)
	return m
}

// start counts a request of deployment in flight and returns its series,
// to end it with; nil without metrics. One lookup serves both ends of the
// request.
func (m *Metrics) start(deployment string) *series {
	if m == nil {
		return nil
	}
	s := m.series(deployment)
	s.inFlight.Inc()
	return s
}

// end records the end of a request counted by start.
func (s *series) end(code int, d time.Duration) {
	if s == nil {
		return
	}
	s.inFlight.Dec()
	s.latency.Observe(d.Seconds())
	if code == 200 {
		s.ok.Inc()
	} else {
		s.m.requests.WithLabelValues(s.deployment, strconv.Itoa(code)).Inc()
	}
}

func (m *Metrics) begin(deployment string) {
	if m == nil {
		return
	}
	m.series(deployment).inFlight.Inc()
}

// observe records a finished request; begun says whether begin was called.
func (m *Metrics) observe(deployment string, code int, d time.Duration, begun bool) {
	if m == nil {
		return
	}
	if !begun {
		m.requests.WithLabelValues(deployment, strconv.Itoa(code)).Inc()
		return
	}
	s := m.series(deployment)
	s.inFlight.Dec()
	s.latency.Observe(d.Seconds())
	if code == 200 {
		s.ok.Inc()
	} else {
		m.requests.WithLabelValues(deployment, strconv.Itoa(code)).Inc()
	}
}

func (m *Metrics) retried(deployment string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(deployment).Inc()
}
