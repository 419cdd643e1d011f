package pool

import (
	"math"
	"time"
)

// Width is how many replicas a model is placed on, and since when its load
// has been low enough to narrow it: the state Widen carries from one plan
// to the next.
type Width struct {
	// Replicas is the shard width, k; 0 means the policy's base width.
	Replicas int
	// BusyAt is the last time the load needed the current
	// width (zero: never); the width narrows ShrinkAfter past it.
	BusyAt time.Time
}

// Widen returns a model's next width for its demand d in a pool of n
// replicas. The width is at least Policy.Replicas (clamped to n) and grows
// at once, up to n, to the fewest replicas that carry d at the target
// load per replica (TargetInFlight requests in flight, TargetRate
// requests per second, whichever asks for more). It narrows, to the
// fewest that carry d at ShrinkBelow × target, only once the load has
// stayed that low for ShrinkAfter.
func Widen(now time.Time, w Width, d Demand, n int, p Policy) Width {
	p = p.withDefaults()
	if n <= 0 {
		return Width{}
	}
	base := min(p.Replicas, n)
	cur := w.Replicas
	if cur <= 0 {
		cur = base
	}
	cur = min(max(cur, base), n)
	grow := min(max(p.needed(d, 1), base), n)
	if grow > cur {
		return Width{Replicas: grow, BusyAt: now}
	}
	low := min(max(p.needed(d, p.ShrinkBelow), base), n)
	if low >= cur {
		return Width{Replicas: cur, BusyAt: now}
	}
	if w.BusyAt.IsZero() || now.Sub(w.BusyAt) < p.ShrinkAfter {
		if w.BusyAt.IsZero() {
			w.BusyAt = now
		}
		return Width{Replicas: cur, BusyAt: w.BusyAt}
	}
	return Width{Replicas: low, BusyAt: now}
}

// needed is the fewest replicas that carry d at frac × the targets.
func (p Policy) needed(d Demand, frac float64) int {
	n := 0
	if p.TargetInFlight > 0 {
		n = max(n, ceilDiv(d.InFlight+float64(d.Held), p.TargetInFlight*frac))
	}
	if p.TargetRate > 0 {
		n = max(n, ceilDiv(d.Rate, p.TargetRate*frac))
	}
	return n
}

func ceilDiv(a, b float64) int {
	if a <= 0 || b <= 0 {
		return 0
	}
	v := math.Ceil(a/b - 1e-9)
	if v > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(v)
}
