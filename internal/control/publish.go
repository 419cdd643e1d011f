package control

import (
	"cmp"
	"slices"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// What the loop publishes of a deployment: its route, with its traffic
// split, meter and shadow.

// publish routes d's ready replicas.
func (c *Controller) publish(d *deployment) {
	if d.deleted {
		return
	}
	if d.pool != nil {
		// A pool's replicas have no route of their own: its models have
		// (pool.go).
		c.publishStatus(d)
		c.syncPoolReplicas(d.pool)
		c.publishPoolStatus(d.pool)
		return
	}
	var eps []*balance.Endpoint
	for _, r := range d.replicas {
		if r.state == serving.ReplicaReady && !r.stopping && r.ep != nil {
			eps = append(eps, r.ep)
		}
	}
	slices.SortFunc(eps, func(a, b *balance.Endpoint) int { return cmp.Compare(a.ID, b.ID) })
	failure := ""
	if len(eps) == 0 {
		failure = d.failure
	}
	rt := routing.Route{Deployment: d.name, Endpoints: eps, Failure: failure, Stats: d.rec, ScaledToZero: d.spec.ScaledToZero()}
	if d.spec.OpenAI() {
		rt.Protocol = serving.ProtocolOpenAI
	}
	if d.run != nil {
		rt.Version = serving.OIPVersion(d.run.Version)
		rt.Model = cmp.Or(d.run.Version, d.run.Spec.Model)
		rt.Metadata = registryMetadata(d.served, d.run)
	}
	rt.Split = splitOf(d.tracks)
	rt.Meter = d.splitMeter()
	rt.Shadow = d.shadowRoute()
	rt.Routing = d.spec.Routing
	rt.Scatter = d.spec.Scatter
	rt.MaxConcurrency = d.spec.Scaling.MaxConcurrency
	c.routes.Publish(rt)
	c.publishStatus(d)
}

// splitMeter returns d's Meter when d is a unit of a traffic split (the
// primary of one, or a track), creating it on first need and keeping it
// across publishes; otherwise it drops any Meter d had, and returns nil: a
// deployment without a split meters nothing.
func (d *deployment) splitMeter() *traffic.Meter {
	if d.tracks == nil && d.track == "" {
		d.meter = nil
		return nil
	}
	if d.meter == nil {
		d.meter = traffic.NewMeter(0, 0)
	}
	return d.meter
}

// shadowRoute returns the data plane's view of d's spec.shadow; nil for
// none, and for a track (a track has no shadow of its own). Its Tally and
// InFlight are kept while the shadow is unchanged, and start afresh with a
// new one.
func (d *deployment) shadowRoute() *routing.Shadow {
	sh := d.spec.Shadow
	switch {
	case sh == nil || d.track != "":
		d.shadow = nil
	case d.shadow == nil || d.shadow.ID != sh.ID():
		d.shadow = routing.NewShadow(d.name, sh)
	}
	return d.shadow
}

// splitOf returns the routing split of tracks; nil for none.
func splitOf(tracks []serving.Track) *routing.Split {
	if len(tracks) == 0 {
		return nil
	}
	out := make([]routing.Track, len(tracks))
	for i, t := range tracks {
		out[i] = routing.Track{Key: t.Key, Tag: t.Tag, Weight: t.Weight}
	}
	s, err := routing.NewSplit(out)
	if err != nil {
		return nil // a stored spec is valid; were it not, the primary takes all
	}
	return s
}
