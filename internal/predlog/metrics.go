package predlog

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a record is dropped, the reason label of
// ebb_predlog_records_dropped_total.
const (
	// ReasonQueueFull: the queue was at Options.MaxRecords or MaxBytes.
	ReasonQueueFull = "queue_full"
	// ReasonTooLarge: the record alone was over Options.MaxRecordBytes.
	ReasonTooLarge = "too_large"
	// ReasonSinkError: the sink failed to write it.
	ReasonSinkError = "sink_error"
	// ReasonClosed: it was logged after Run ended.
	ReasonClosed = "closed"
	// ReasonUploadBacklog: its part waited for S3 beyond
	// UploaderOptions.MaxPendingBytes and was deleted unsent.
	ReasonUploadBacklog = "upload_backlog"
)

var reasons = []string{ReasonQueueFull, ReasonTooLarge, ReasonSinkError, ReasonClosed, ReasonUploadBacklog}

// Deployment label values beside deployments' names.
const (
	// OtherDeployment counts the deployments beyond the label cap.
	OtherDeployment = "(other)"
	// AllDeployments labels counts of parts, which mix deployments.
	AllDeployments = "(all)"
)

// DefaultMaxDeploymentLabels caps distinct deployment labels when
// NewMetrics is given no cap.
const DefaultMaxDeploymentLabels = 1000

// Metrics counts the prediction log:
//
//	ebb_predlog_records_written_total{deployment}
//	ebb_predlog_records_dropped_total{deployment, reason}
//	ebb_predlog_bytes_written_total{deployment}  (Record.Size of written records)
//	ebb_predlog_parts_uploaded_total, ebb_predlog_upload_errors_total
//
// The first maxDeployments deployments get labels of their own for the
// life of the process; the rest count as OtherDeployment. A nil *Metrics
// counts nothing. Counting does not allocate once a deployment's
// counters exist.
type Metrics struct {
	writtenVec, bytesVec *prometheus.CounterVec
	droppedVec           *prometheus.CounterVec
	uploaded, uploadErrs prometheus.Counter
	maxDeployments       int

	// mu guards deps.
	mu   sync.RWMutex
	deps map[string]*depCounters
}

type depCounters struct {
	written, bytes prometheus.Counter
	dropped        map[string]prometheus.Counter
}

// NewMetrics registers the prediction log's metrics with reg;
// maxDeployments caps distinct deployment labels (0:
// DefaultMaxDeploymentLabels).
func NewMetrics(reg prometheus.Registerer, maxDeployments int) *Metrics {
	if maxDeployments <= 0 {
		maxDeployments = DefaultMaxDeploymentLabels
	}
	m := &Metrics{
		writtenVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_predlog_records_written_total",
			Help: "Prediction records handed to the prediction log's sink, by deployment (\"(other)\" beyond the first distinct deployments).",
		}, []string{"deployment"}),
		bytesVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_predlog_bytes_written_total",
			Help: "Bytes of prediction records (payloads and fields, before encoding) handed to the sink, by deployment.",
		}, []string{"deployment"}),
		droppedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_predlog_records_dropped_total",
			Help: "Sampled prediction records not logged, by deployment and reason: queue_full (backpressure), too_large, sink_error, closed, upload_backlog (deployment \"(all)\").",
		}, []string{"deployment", "reason"}),
		uploaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_predlog_parts_uploaded_total",
			Help: "Prediction-log parts uploaded to S3.",
		}),
		uploadErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_predlog_upload_errors_total",
			Help: "Failed uploads of prediction-log parts to S3 (each is retried).",
		}),
		maxDeployments: maxDeployments,
		deps:           make(map[string]*depCounters),
	}
	reg.MustRegister(m.writtenVec, m.bytesVec, m.droppedVec, m.uploaded, m.uploadErrs)
	return m
}

// counters returns deployment's counters, made on first use.
func (m *Metrics) counters(deployment string) *depCounters {
	m.mu.RLock()
	c := m.deps[deployment]
	if c == nil && len(m.deps) >= m.maxDeployments && deployment != AllDeployments {
		c = m.deps[OtherDeployment]
	}
	m.mu.RUnlock()
	if c != nil {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c = m.deps[deployment]; c != nil {
		return c
	}
	if len(m.deps) >= m.maxDeployments && deployment != AllDeployments {
		deployment = OtherDeployment
		if c = m.deps[deployment]; c != nil {
			return c
		}
	}
	c = &depCounters{
		written: m.writtenVec.WithLabelValues(deployment),
		bytes:   m.bytesVec.WithLabelValues(deployment),
		dropped: make(map[string]prometheus.Counter, len(reasons)),
	}
	for _, r := range reasons {
		c.dropped[r] = m.droppedVec.WithLabelValues(deployment, r)
	}
	m.deps[deployment] = c
	return c
}

func (m *Metrics) dropped(deployment, reason string) { m.droppedN(deployment, reason, 1) }

func (m *Metrics) droppedN(deployment, reason string, n int) {
	if m == nil {
		return
	}
	m.counters(deployment).dropped[reason].Add(float64(n))
}

func (m *Metrics) written(deployment string, size int) {
	if m == nil {
		return
	}
	c := m.counters(deployment)
	c.written.Inc()
	c.bytes.Add(float64(size))
}

func (m *Metrics) upload(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.uploadErrs.Inc()
	} else {
		m.uploaded.Inc()
	}
}
