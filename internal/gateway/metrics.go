package gateway

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's Prometheus metrics. A nil *Metrics records
// nothing.
//
// Requests and their latency are counted by deployment and version: the
// deployment a request named (the tracks of a split count under it) and
// the version that served it (versionLabel), so that a canary's errors and
// latency show beside its primary's, and a version keeps its series when
// it is promoted. Requests in flight and retries are by deployment.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
	retries  *prometheus.CounterVec
	limited  *prometheus.CounterVec // ebb_gateway_limited_total (limits.go)

	// byDeployment caches each deployment's series (*series), and each
	// series its versions', so the hot path does no label hashing.
	byDeployment sync.Map
}

// series are one deployment's most used metric children.
type series struct {
	m          *Metrics
	deployment string
	inFlight   prometheus.Gauge
	// versions are the children of each version the deployment served,
	// copied on write: a deployment serves few versions, which the hot
	// path scans without a lock or an allocation.
	versions atomic.Pointer[[]*versionSeries]
	mu       sync.Mutex // serializes additions to versions
}

// versionSeries are the children of one version of a deployment.
type versionSeries struct {
	version string
	latency prometheus.Observer
	ok      prometheus.Counter // code 200
}

func (m *Metrics) series(deployment string) *series {
	if v, ok := m.byDeployment.Load(deployment); ok {
		return v.(*series)
	}
	s := &series{m: m, deployment: deployment, inFlight: m.inFlight.WithLabelValues(deployment)}
	v, _ := m.byDeployment.LoadOrStore(deployment, s)
	return v.(*series)
}

// of returns the children of version (a long-lived string: it stays a
// label value) of s's deployment.
func (s *series) of(version string) *versionSeries {
	if p := s.versions.Load(); p != nil {
		for _, v := range *p {
			if v.version == version {
				return v
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var known []*versionSeries
	if p := s.versions.Load(); p != nil {
		known = *p
		for _, v := range known {
			if v.version == version {
				return v
			}
		}
	}
	v := &versionSeries{
		version: version,
		latency: s.m.latency.WithLabelValues(s.deployment, version),
		ok:      s.m.requests.WithLabelValues(s.deployment, "200", version),
	}
	next := append(known[:len(known):len(known)], v)
	s.versions.Store(&next)
	return v
}

// last returns the replica x's request was last sent to; nil for none.
func (x *exchange) last() *balance.Endpoint {
	if len(x.tried) == 0 {
		return nil
	}
	return x.tried[len(x.tried)-1]
}

// versionLabel returns the version label of a request that rt served,
// last sent to ep (nil when it reached no replica); tag is rt's tag when
// rt is a track of a split, else "". It is the registry version (OIP v2
// form, "4") of ep when it has one (during a rollover a deployment's
// replicas serve two), else the version rt's new replicas serve, else the
// tag; "" for a model given by path outside a split. It never comes from
// the request itself, so that a client cannot add series.
func versionLabel(rt *routing.Route, ep *balance.Endpoint, tag string) string {
	switch {
	case ep != nil && ep.Version != "":
		return ep.Version
	case rt != nil && rt.Version != "":
		return rt.Version
	}
	return tag
}

// NewMetrics creates the gateway's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_gateway_requests_total",
			Help: "Inference requests answered, by deployment, HTTP status code and the version that served them.",
		}, []string{"deployment", "code", "version"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ebb_gateway_request_duration_seconds",
			Help:    "Time from request arrival to response, including any hold while the deployment was cold, by deployment and the version that served the request.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"deployment", "version"}),
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

// end records the end of a request counted by start, served by version
// (versionLabel).
func (s *series) end(code int, version string, d time.Duration) {
	if s == nil {
		return
	}
	s.inFlight.Dec()
	s.done(code, version, d)
}

// done counts a request's answer and latency under version.
func (s *series) done(code int, version string, d time.Duration) {
	v := s.of(version)
	v.latency.Observe(d.Seconds())
	if code == 200 {
		v.ok.Inc()
	} else {
		s.m.requests.WithLabelValues(s.deployment, strconv.Itoa(code), version).Inc()
	}
}

func (m *Metrics) begin(deployment string) {
	if m == nil {
		return
	}
	m.series(deployment).inFlight.Inc()
}

// observe records a finished request, served by version (versionLabel);
// begun says whether begin was called. One that was not (refused before
// it was routed) counts its code alone.
func (m *Metrics) observe(deployment, version string, code int, d time.Duration, begun bool) {
	if m == nil {
		return
	}
	if !begun {
		m.requests.WithLabelValues(deployment, strconv.Itoa(code), version).Inc()
		return
	}
	s := m.series(deployment)
	s.inFlight.Dec()
	s.done(code, version, d)
}

// retried counts a retry of a request of the route keyed key: a
// deployment, or a track of one, which counts under its deployment.
func (m *Metrics) retried(key string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(serving.ParentOf(key)).Inc()
}
