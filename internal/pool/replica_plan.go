package pool

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// replicaPlan is one replica's memory while Plan decides: what it holds,
// what the plan unloads and loads there, and what may not be evicted.
type replicaPlan struct {
	id     string
	budget int64
	// used counts every model held or loading, at its measured size (or
	// the plan's estimate for one the plan loads), less those unloaded.
	used int64
	// hosted indexes order and counted by model: one map, as a plan over
	// 10,000 models builds it for every replica.
	hosted map[string]int
	// order is what the replica holds, in the order of its index, and
	// counted the size used counts each at.
	order   []*Hosted
	counted []int64
	// protected models are not evicted: those with demand on this replica
	// and those the plan loads here.
	protected map[string]bool
	// gone are the models the plan unloads.
	gone           map[string]bool
	unloads, loads []Action
}

// newReplicaPlan starts the plan of r, counting a model still loading and
// not yet measured at estimate bytes.
func newReplicaPlan(r *Replica, estimate int64) *replicaPlan {
	rp := &replicaPlan{id: r.ID, budget: r.Budget, hosted: make(map[string]int, len(r.Models)),
		order: make([]*Hosted, 0, len(r.Models)), counted: make([]int64, 0, len(r.Models)),
		protected: map[string]bool{}, gone: map[string]bool{}}
	for i := range r.Models {
		h := &r.Models[i]
		if _, dup := rp.hosted[h.Model]; dup {
			continue
		}
		rp.hosted[h.Model] = len(rp.order)
		rp.order = append(rp.order, h)
		size := h.Bytes
		if h.State == Loading && size == 0 {
			size = estimate
		}
		rp.counted = append(rp.counted, size)
		rp.used += size
	}
	return rp
}

// holds returns the replica's entry for model, if it holds or loads it.
func (rp *replicaPlan) holds(model string) (*Hosted, bool) {
	i, ok := rp.hosted[model]
	if !ok {
		return nil, false
	}
	return rp.order[i], true
}

// unload plans to unload h.
func (rp *replicaPlan) unload(h *Hosted, reason string) {
	if rp.gone[h.Model] {
		return
	}
	rp.gone[h.Model] = true
	size := rp.counted[rp.hosted[h.Model]]
	rp.used -= size
	rp.unloads = append(rp.unloads, Action{Kind: Unload, Replica: rp.id, Model: h.Model, Bytes: size, Reason: reason})
}

// load plans to load model, counted at size bytes.
func (rp *replicaPlan) load(model string, size int64) {
	rp.protected[model] = true
	rp.used += size
	rp.loads = append(rp.loads, Action{Kind: Load, Replica: rp.id, Model: model, Bytes: size, Reason: "demand on its shard"})
}

// makeRoom plans the unloads, least recently used first, that leave size
// bytes free within the budget, and returns nil; or, when even unloading
// every model it may evict would not, plans none and says why. Evictable
// models are ready, have no request in flight and are not protected.
func (rp *replicaPlan) makeRoom(size int64, why string) error {
	need := rp.used + size - rp.budget
	if need <= 0 {
		return nil
	}
	var idle []*Hosted
	var free int64
	for _, h := range rp.order {
		if h.State == Ready && h.InFlight == 0 && !rp.protected[h.Model] && !rp.gone[h.Model] {
			idle = append(idle, h)
		}
	}
	slices.SortFunc(idle, func(a, b *Hosted) int {
		return cmp.Or(a.LastUsed.Compare(b.LastUsed), cmp.Compare(a.Model, b.Model))
	})
	n := 0
	for n < len(idle) && free < need {
		free += idle[n].Bytes
		n++
	}
	if free < need {
		return fmt.Errorf("no room: it needs %s, the replica's budget is %s with %s held, and unloading every idle model would free %s (the rest have requests in flight, demand or are loading)",
			FormatBytes(size), FormatBytes(rp.budget), FormatBytes(rp.used), FormatBytes(free))
	}
	for _, h := range idle[:n] {
		rp.unload(h, fmt.Sprintf("evicted, least recently used (last used %s), %s", h.LastUsed.UTC().Format(time.RFC3339), why))
	}
	return nil
}
