package control

import (
	"sync"

	"github.com/ebb-ml/ebb/internal/autoscale"
)

// decisions keeps each deployment's latest autoscaler decisions with
// their inputs (autoscale.History), for `ebb describe` and for `ebb
// simulate --from-history` to replay. It lives as long as the deployment
// does in the loop.
type decisions struct {
	mu sync.Mutex // guards byName
	// byName maps a deployment (or track) key to its history.
	byName map[string]*autoscale.History
}

func (ds *decisions) add(name string, r autoscale.Record) {
	ds.mu.Lock()
	h := ds.byName[name]
	if h == nil {
		if ds.byName == nil {
			ds.byName = map[string]*autoscale.History{}
		}
		h = autoscale.NewHistory(0)
		ds.byName[name] = h
	}
	ds.mu.Unlock()
	h.Add(r)
}

func (ds *decisions) forget(name string) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	delete(ds.byName, name)
}

// Decisions returns the latest autoscaler decisions of a deployment (or
// a split's track, by its key), oldest first, each with its inputs; none
// for a deployment the loop does not run.
func (c *Controller) Decisions(name string) []autoscale.Record {
	c.decisions.mu.Lock()
	h := c.decisions.byName[name]
	c.decisions.mu.Unlock()
	if h == nil {
		return nil
	}
	return h.Records()
}
