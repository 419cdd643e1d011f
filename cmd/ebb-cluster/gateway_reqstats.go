package main

import "github.com/prometheus/client_golang/prometheus"

// teeRegisterer registers each collector with both registerers: the
// gateway registers its request metrics with its /metrics registry and
// with one of their own, which each demand report gathers
// (reqstats.Gathered) for the operator's request statistics, so that a
// report, every second, reads those metrics alone and not the whole
// registry.
type teeRegisterer struct {
	a, b prometheus.Registerer
}

var _ prometheus.Registerer = teeRegisterer{}

func (t teeRegisterer) Register(c prometheus.Collector) error {
	if err := t.a.Register(c); err != nil {
		return err
	}
	if err := t.b.Register(c); err != nil {
		t.a.Unregister(c)
		return err
	}
	return nil
}

func (t teeRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := t.Register(c); err != nil {
			panic(err)
		}
	}
}

func (t teeRegisterer) Unregister(c prometheus.Collector) bool {
	a := t.a.Unregister(c)
	b := t.b.Unregister(c)
	return a || b
}
