package reqstats

import "github.com/prometheus/client_golang/prometheus"

// Tee registers each collector with both registerers. A gateway
// registers its request metrics with its /metrics registry and, through
// a Tee, with a registry of their own, which the Sampler (ebb up) or the
// demand reports (a cluster's gateways) gather as Gathered: a read every
// second or so then costs those metrics alone, not the whole registry,
// which in a big instance holds series for every one of its thousands of
// deployments.
type Tee struct {
	A, B prometheus.Registerer
}

var _ prometheus.Registerer = Tee{}

// Register implements prometheus.Registerer: with A, then B, neither
// when either refuses.
func (t Tee) Register(c prometheus.Collector) error {
	if err := t.A.Register(c); err != nil {
		return err
	}
	if err := t.B.Register(c); err != nil {
		t.A.Unregister(c)
		return err
	}
	return nil
}

// MustRegister implements prometheus.Registerer.
func (t Tee) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := t.Register(c); err != nil {
			panic(err)
		}
	}
}

// Unregister implements prometheus.Registerer.
func (t Tee) Unregister(c prometheus.Collector) bool {
	a := t.A.Unregister(c)
	b := t.B.Unregister(c)
	return a || b
}
