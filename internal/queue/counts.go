package queue

import (
	"sync"
	"time"
)

// RecountAfter is how long PendingCounts trusts a count of a deployment's
// pending requests that is under half its bound.
const RecountAfter = time.Second

// PendingCounts is what a Queue's Enqueue knows of each deployment's
// pending requests, to keep them under its MaxDepth without counting them
// on every enqueue (a count reads the deployment's whole backlog, which
// costs more than the enqueue once thousands wait): the count it last
// took, plus its own enqueues since. Completions are not taken off, so it
// only overestimates, as far as this process sees; only other processes'
// enqueues (several gateways on one store) go unseen between counts, and
// they would need to add half the bound within RecountAfter to pass it.
// The zero PendingCounts is ready to use.
type PendingCounts struct {
	mu sync.Mutex
	m  map[string]pendingCount
}

type pendingCount struct {
	n  int
	at time.Time // when they were counted
}

// MustCount reports whether an enqueue to dep at now must count its
// pending requests first: the last count is RecountAfter old (or from a
// clock that went back), or it, with the enqueues since, is at half of
// maxDepth or more.
func (c *PendingCounts) MustCount(dep string, now time.Time, maxDepth int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.m[dep]
	return !ok || now.Sub(p.at) >= RecountAfter || now.Before(p.at) || p.n >= maxDepth/2
}

// Enqueued records one enqueue to dep; counted, when >= 0, is how many
// were pending before it, counted at now (-1: not counted this time).
func (c *PendingCounts) Enqueued(dep string, counted int, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if counted >= 0 {
		if c.m == nil {
			c.m = map[string]pendingCount{}
		}
		c.m[dep] = pendingCount{n: counted + 1, at: now}
		return
	}
	if p, ok := c.m[dep]; ok {
		p.n++
		c.m[dep] = p
	}
}
