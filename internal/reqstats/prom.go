package reqstats

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// The gateway's metrics a Gathered reads (internal/gateway/metrics.go).
const (
	RequestsMetric = "ebb_gateway_requests_total"           // labels deployment, code, version
	LatencyMetric  = "ebb_gateway_request_duration_seconds" // histogram; labels deployment, version
)

// Gathered is a Source over the gateway's Prometheus metrics in this
// process (ebb up's registry): requests by deployment summed over codes
// and versions, 5xx codes as errors, and the latency histogram summed over
// versions.
type Gathered struct {
	Gatherer prometheus.Gatherer
}

// Totals gathers the metrics and sums them by deployment.
func (g Gathered) Totals() (map[string]Totals, error) {
	mfs, err := g.Gatherer.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]Totals{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case RequestsMetric:
			for _, m := range mf.GetMetric() {
				dep, code := "", 0
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "deployment":
						dep = l.GetValue()
					case "code":
						code, _ = strconv.Atoi(l.GetValue())
					}
				}
				t := out[dep]
				n := uint64(m.GetCounter().GetValue())
				t.Requests += n
				if code >= 500 {
					t.Errors += n
				}
				out[dep] = t
			}
		case LatencyMetric:
			for _, m := range mf.GetMetric() {
				dep := ""
				for _, l := range m.GetLabel() {
					if l.GetName() == "deployment" {
						dep = l.GetValue()
					}
				}
				h := m.GetHistogram()
				t := out[dep]
				bs := h.GetBucket()
				if len(t.Bounds) != len(bs) {
					t.Bounds, t.Counts = make([]float64, len(bs)), make([]uint64, len(bs))
				}
				for i, b := range bs {
					t.Bounds[i] = b.GetUpperBound()
					t.Counts[i] += b.GetCumulativeCount()
				}
				t.Observed += h.GetSampleCount()
				out[dep] = t
			}
		}
	}
	return out, nil
}
