package control

import (
	"time"

	"github.com/ebb-ml/ebb/internal/stats"
)

// Demand reports a deployment's demand when it is measured outside this
// process (gateway pods reporting to the operator).
type Demand interface {
	// Sample returns the demand since the previous Sample, like
	// stats.Recorder.Sample.
	Sample(deployment string, now time.Time) stats.Sample
	// InFlight returns the requests being served or held right now.
	InFlight(deployment string) int
}

func (c *Controller) sample(d *deployment, now time.Time) stats.Sample {
	if d.pool != nil {
		return c.samplePool(d.pool, now) // pool.go
	}
	if c.opts.Demand != nil {
		return c.opts.Demand.Sample(d.name, now)
	}
	return d.rec.Sample(now)
}

func (c *Controller) inFlight(d *deployment) int {
	if d.pool != nil {
		return c.poolInFlight(d.pool)
	}
	if c.opts.Demand != nil {
		return c.opts.Demand.InFlight(d.name)
	}
	return d.rec.InFlight()
}
