package drift

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebb-ml/ebb/internal/monitor"
)

// Metrics counts what a Sink does with the prediction log's records:
//
//	ebb_drift_rows_observed_total{deployment}
//	ebb_drift_records_skipped_total{deployment, reason}
//
// A nil *Metrics counts nothing.
type Metrics struct {
	rows  *prometheus.CounterVec
	skips *prometheus.CounterVec
}

// NewMetrics registers a Sink's counters with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_drift_rows_observed_total",
			Help: "Rows of logged predictions counted into a drift window, by deployment.",
		}, []string{"deployment"}),
		skips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_drift_records_skipped_total",
			Help: "Logged predictions the drift monitor did not count, by deployment and reason (no_profile, status, not_json, no_tensor, shape).",
		}, []string{"deployment", "reason"}),
	}
	reg.MustRegister(m.rows, m.skips)
	return m
}

func (m *Metrics) observed(deployment string, rows int) {
	if m != nil {
		m.rows.WithLabelValues(deployment).Add(float64(rows))
	}
}

func (m *Metrics) skipped(deployment, reason string) {
	if m != nil {
		m.skips.WithLabelValues(deployment, reason).Inc()
	}
}

// Reporter is where a Collector reads the drift reports: a Monitor in
// ebb up, a Hub on the cluster's operator.
type Reporter interface {
	// AllReports returns each watched deployment's reports, by name.
	AllReports() map[string][]monitor.VersionReport
}

// Collector exports the drift of every watched version when scraped:
//
//	ebb_drift_score{deployment, version, feature, stat}  stat: psi, ks, mean_shift (numeric), chi2_p (categorical)
//	ebb_drift_status{deployment, version, feature}        0 unknown, 1 ok, 2 warn, 3 drift
//	ebb_drift_window_rows{deployment, version}            rows in the window
//
// A feature with no value in the window has a status and no scores.
type Collector struct {
	src                 Reporter
	score, status, rows *prometheus.Desc
}

// NewCollector returns a Collector over src; register it.
func NewCollector(src Reporter) *Collector {
	return &Collector{
		src: src,
		score: prometheus.NewDesc("ebb_drift_score",
			"Drift of a feature's window from its version's reference profile: psi (every feature), ks and mean_shift (numeric, mean shift in reference standard deviations), chi2_p (categorical, the chi-squared p-value: small is drift).",
			[]string{"deployment", "version", "feature", "stat"}, nil),
		status: prometheus.NewDesc("ebb_drift_status",
			"Drift verdict of a feature: 0 unknown (too few values), 1 ok, 2 warn, 3 drift.",
			[]string{"deployment", "version", "feature"}, nil),
		rows: prometheus.NewDesc("ebb_drift_window_rows",
			"Rows in a version's drift window.",
			[]string{"deployment", "version"}, nil),
	}
}

// Describe sends the descriptors.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.score
	ch <- c.status
	ch <- c.rows
}

// Collect computes every report and sends its values.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for dep, reports := range c.src.AllReports() {
		for _, r := range reports {
			ch <- prometheus.MustNewConstMetric(c.rows, prometheus.GaugeValue, float64(r.Rows), dep, r.Version)
			for _, f := range r.Features {
				ch <- prometheus.MustNewConstMetric(c.status, prometheus.GaugeValue, float64(f.Status), dep, r.Version, f.Feature)
				if f.Count == 0 {
					continue
				}
				score := func(stat string, v float64) {
					ch <- prometheus.MustNewConstMetric(c.score, prometheus.GaugeValue, v, dep, r.Version, f.Feature, stat)
				}
				score("psi", f.PSI)
				if f.Kind == monitor.Numeric {
					score("ks", f.KS)
					score("mean_shift", f.MeanShift)
				} else {
					score("chi2_p", f.Chi2P)
				}
			}
		}
	}
}
