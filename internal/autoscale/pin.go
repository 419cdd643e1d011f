package autoscale

import (
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// Scale returns the decision for a deployment with spec: Pin when the spec
// pins its replica count (spec.replicas), otherwise Decide within the
// scaling range. Both homes' control loops call it.
func Scale(now time.Time, spec *serving.Spec, m Metrics, st State) Decision {
	if n, ok := spec.Pinned(); ok {
		return Pin(now, n, m, st)
	}
	return Decide(now, spec.Scaling, m, st)
}

// Pin returns the decision for a deployment pinned at n replicas: exactly
// n, whatever the demand, with no rate limit and no panic mode; pinned at
// 0, requests in flight do not wake it. The idle clock keeps running, so
// that when the pin is removed Decide scales from where the load is, not
// from a stale last-active time.
func Pin(now time.Time, n int32, m Metrics, st State) Decision {
	n = max(n, 0)
	next := st
	if m.LastActive.After(next.LastActive) {
		next.LastActive = m.LastActive
	}
	if m.InFlight > 0 || next.LastActive.IsZero() {
		next.LastActive = now
	}
	next.PanicSince, next.PanicTriggered = time.Time{}, time.Time{}
	next.Desired = n
	if n != st.Desired {
		next.LastChange = now
	}
	reason := fmt.Sprintf("pinned at %d by spec.replicas", n)
	if n == 0 {
		reason = "scaled to zero by its owner (spec.replicas is 0): requests do not start a replica"
	}
	return Decision{Desired: n, State: next, Reason: reason}
}
