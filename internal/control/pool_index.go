package control

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"github.com/ebb-ml/ebb/internal/pool"
	"github.com/ebb-ml/ebb/internal/replica"
)

// Reading a pool's replicas' repository indexes (see pool.go).

// pollPool reads every ready replica's index in the background, unless
// a poll runs.
func (c *Controller) pollPool(p *poolState) {
	if p.polling || len(p.reps) == 0 {
		return
	}
	p.polling, p.lastPoll = true, c.opts.Clock.Now()
	type target struct {
		h     replica.Handle
		epoch int
	}
	var targets []target
	for _, r := range p.reps {
		targets = append(targets, target{r.rec.h, r.epoch})
	}
	name := p.name
	c.wg.Go(func() {
		out := make([]replicaIndex, len(targets))
		var wg sync.WaitGroup
		for i, t := range targets {
			wg.Go(func() {
				ri := replicaIndex{id: t.h.Spec.ID, epoch: t.epoch}
				code, body, err := c.poolPost(t.h, "/v2/repository/index", nil, poolIndexTimeout)
				switch {
				case err != nil:
					ri.err = err
				case code != http.StatusOK:
					ri.err = fmt.Errorf("index answered %d: %s", code, body)
				default:
					ri.err = json.Unmarshal(body, &ri.entries)
				}
				out[i] = ri
			})
		}
		wg.Wait()
		c.send(event{kind: evPool, deployment: name, pool: &poolEvent{kind: poolIndexed, indexes: out}})
	})
}

// indexed merges polled indexes into the view. A replica that ran no
// action across the read is taken at its word; otherwise only the last
// use and requests in flight of the models both know are taken.
func (c *Controller) indexed(p *poolState, idx []replicaIndex) {
	changed := map[string]bool{}
	for _, ri := range idx {
		r := p.reps[ri.id]
		if r == nil || ri.err != nil {
			continue
		}
		exact := ri.epoch == r.epoch && !r.busy && len(r.queue) == 0
		seen := make(map[string]bool, len(ri.entries))
		for _, e := range ri.entries {
			seen[e.Name] = true
			h := r.hosted[e.Name]
			if h == nil && !exact {
				continue
			}
			if h == nil || h.State != e.State {
				changed[e.Name] = true
			}
			nh := pool.Hosted{Model: e.Name, State: e.State, Bytes: e.Bytes, LastUsed: e.LastUsed, InFlight: e.InFlight, Reason: e.Reason}
			if !exact && h != nil {
				nh.State, nh.Reason = h.State, h.Reason
			}
			r.hosted[e.Name] = &nh
			if rec := p.mem.Models[e.Name]; e.Bytes > rec.Bytes {
				rec.Bytes = e.Bytes
				p.mem.Models[e.Name] = rec
			}
		}
		if exact {
			for name := range r.hosted {
				if !seen[name] {
					delete(r.hosted, name)
					changed[name] = true
				}
			}
		}
	}
	for name := range changed {
		if m := p.models[name]; m != nil {
			c.publishPooled(p, m)
		}
	}
	c.planPool(p)
}
