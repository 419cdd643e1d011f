package artifact

import "github.com/prometheus/client_golang/prometheus"

// CacheMetrics are a Cache's Prometheus metrics. A nil *CacheMetrics
// records nothing.
type CacheMetrics struct {
	hits      prometheus.Counter
	misses    prometheus.Counter
	bytes     prometheus.Counter
	evictions prometheus.Counter
	checksum  prometheus.Counter
	size      prometheus.Gauge
}

// NewCacheMetrics creates the cache metrics and registers them with reg.
func NewCacheMetrics(reg prometheus.Registerer) *CacheMetrics {
	m := &CacheMetrics{
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_artifact_cache_hits_total",
			Help: "Artifact fetches served from the host cache without reading the artifact store.",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_artifact_cache_misses_total",
			Help: "Artifact fetches that had to wait for a download (one download may serve several misses).",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_artifact_cache_fetched_bytes_total",
			Help: "Bytes downloaded from the artifact store into the host cache.",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_artifact_cache_evictions_total",
			Help: "Cached artifacts removed to keep the cache within its size budget.",
		}),
		checksum: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_artifact_cache_checksum_failures_total",
			Help: "Downloads refused because their SHA-256 did not match the expected one.",
		}),
		size: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ebb_artifact_cache_size_bytes",
			Help: "Bytes held in the host artifact cache.",
		}),
	}
	reg.MustRegister(m.hits, m.misses, m.bytes, m.evictions, m.checksum, m.size)
	return m
}

func (m *CacheMetrics) hit() {
	if m != nil {
		m.hits.Inc()
	}
}

func (m *CacheMetrics) miss() {
	if m != nil {
		m.misses.Inc()
	}
}

func (m *CacheMetrics) fetched(n int64) {
	if m != nil {
		m.bytes.Add(float64(n))
	}
}

func (m *CacheMetrics) evicted() {
	if m != nil {
		m.evictions.Inc()
	}
}

func (m *CacheMetrics) corrupt() {
	if m != nil {
		m.checksum.Inc()
	}
}

func (m *CacheMetrics) setSize(n int64) {
	if m != nil {
		m.size.Set(float64(n))
	}
}
