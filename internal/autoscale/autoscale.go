// Package autoscale decides how many replicas a deployment should have. It
// follows the idea of Knative's KPA: keep the average concurrency per
// replica near a target over a stable window, react within a short panic
// window when demand jumps well above capacity, scale from zero as soon as a
// request waits, and scale to zero after a quiet period.
//
// Decide is a pure function of (now, spec, metrics, state): it reads no
// clock and does no I/O, so the control loop can apply its decisions and a
// test can replay hours of traffic in a moment.
package autoscale

import (
	"fmt"
	"math"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
)

// Rate limits on one decision, as in Knative's max-scale-up-rate and
// max-scale-down-rate.
const (
	// MaxScaleUpRate bounds a scale-up to this many times the ready
	// replicas (at least one ready replica is assumed).
	MaxScaleUpRate = 1000
	// MaxScaleDownRate bounds a scale-down to the current desired count
	// divided by this, rounded up.
	MaxScaleDownRate = 2
	// ScaleDownTolerance is the headroom a scale-down keeps: fewer replicas
	// are chosen only when each would carry at most (1 - tolerance) ×
	// target, so load that hovers at a multiple of the target does not
	// flip the count back and forth.
	ScaleDownTolerance = 0.1
)

// Metrics is what Decide knows about a deployment's load at one moment.
type Metrics struct {
	// StableConcurrency and PanicConcurrency are the average number of
	// requests in flight over the stable and the panic window.
	StableConcurrency float64
	PanicConcurrency  float64
	// InFlight is the number of requests in flight now, including those the
	// activator holds while no replica is ready.
	InFlight int
	// Ready is the number of replicas receiving traffic.
	Ready int
	// LastActive is the latest time a request was seen; zero if never.
	LastActive time.Time
	// NoData is true when no sample lies in the stable window (just after
	// start or a restart). Decide then keeps the current count, scaling up
	// only for requests in flight and never down.
	NoData bool
}

// Observe gathers Metrics from w: the average concurrency over
// spec.StableWindow and over the panic window (StableWindow ×
// PanicWindowPercent / 100). When the panic window holds no sample the
// stable average stands in for it. A nil w means no data.
func Observe(now time.Time, w *stats.Window, inFlight, ready int, spec serving.Scaling) Metrics {
	spec = normalize(spec)
	m := Metrics{InFlight: inFlight, Ready: ready}
	if w == nil {
		m.NoData = true
		return m
	}
	m.LastActive = w.LastActive()
	stable, ok := w.Average(now, spec.StableWindow.Duration)
	if !ok {
		m.NoData = true
		return m
	}
	m.StableConcurrency = stable
	m.PanicConcurrency = stable
	if p, ok := w.Average(now, panicWindow(spec)); ok {
		m.PanicConcurrency = p
	}
	return m
}

// State is what Decide carries from one decision to the next. The caller
// keeps the State of the latest Decision and passes it back; the zero State
// means "no replicas desired, never decided".
type State struct {
	// Desired is the latest desired replica count.
	Desired int32
	// LastChange is when Desired last changed; zero if never.
	LastChange time.Time
	// PanicSince is when the current panic began; zero when not panicking.
	PanicSince time.Time
	// PanicTriggered is the latest decision at which panic-window demand
	// crossed the threshold. Panic ends a full StableWindow after it.
	PanicTriggered time.Time
	// LastActive is the latest time load was seen, by the metrics or by
	// Decide itself. Its idle clock starts at the first decision, so a
	// restart never scales to zero before ScaleToZeroAfter has passed.
	LastActive time.Time
}

// Panicking reports whether the state is in panic mode.
func (s State) Panicking() bool { return !s.PanicSince.IsZero() }

// Decision is the outcome of Decide.
type Decision struct {
	// Desired is the number of replicas the deployment should have.
	Desired int32
	// State is to be passed to the next Decide.
	State State
	// Panic reports whether the decision was taken in panic mode.
	Panic bool
	// Reason says in a few words why Desired is what it is.
	Reason string
}

// Decide returns the desired replica count for a deployment with scaling
// policy spec, given the metrics m observed at now and the state of the
// previous decision. The result always lies in [MinReplicas, MaxReplicas].
//
// In order:
//   - With requests waiting and nothing desired, or no replica ready yet
//     (all of them held), it scales at once to enough replicas for them,
//     and never down while they wait.
//   - With no data it keeps the current count (plus what requests in flight
//     need).
//   - Otherwise it wants ceil(stable concurrency / target), or, when that
//     is fewer than now, enough replicas for 90% of target each (see
//     ScaleDownTolerance).
//   - When panic-window concurrency reaches PanicThreshold% of the ready
//     replicas' capacity (Ready × target) it panics: it uses the larger
//     panic-window figure and does not scale down until a full StableWindow
//     passes without the threshold being crossed.
//   - It never scales down below what the requests in flight need
//     (ceil(InFlight / target)), and per decision it scales down by at most
//     half and up by at most MaxScaleUpRate × ready.
//   - It scales to zero only when MinReplicas is 0, nothing is in flight and
//     no load was seen for ScaleToZeroAfter; until then it keeps at least one
//     replica.
func Decide(now time.Time, spec serving.Scaling, m Metrics, st State) Decision {
	spec = normalize(spec)
	target := spec.TargetConcurrency
	next := st

	// The idle clock: the latest sign of load, or this decision if there
	// has never been one.
	if m.LastActive.After(next.LastActive) {
		next.LastActive = m.LastActive
	}
	if m.InFlight > 0 || next.LastActive.IsZero() {
		next.LastActive = now
	}
	idleFor := now.Sub(next.LastActive)

	inFlightNeed := int32(0)
	if m.InFlight > 0 {
		inFlightNeed = ceilDiv(float64(m.InFlight), target)
	}

	var desired int32
	var reason string
	switch {
	case m.InFlight > 0 && (st.Desired == 0 || m.Ready == 0):
		// Scaling from zero, or still cold: every request in flight is
		// held, and all of them land on the replicas at once when the
		// first is ready. Size for them now, and again as more arrive,
		// so that a burst at zero scales out while it is held rather
		// than a tick after one replica has served it.
		desired = max(1, inFlightNeed, st.Desired)
		if !m.NoData {
			desired = max(desired, ceilDiv(m.StableConcurrency, target))
		}
		reason = fmt.Sprintf("scale from zero: %d %s waiting", m.InFlight, plural(m.InFlight, "request", "requests"))
		return finish(now, spec, st, next, desired, reason)

	case m.NoData:
		desired = max(st.Desired, inFlightNeed)
		reason = fmt.Sprintf("no metrics yet: holding %d", desired)
		return finish(now, spec, st, next, desired, reason)
	}

	stableWant := ceilDiv(m.StableConcurrency, target)
	if stableWant < st.Desired {
		stableWant = min(st.Desired, ceilDiv(m.StableConcurrency, target*(1-ScaleDownTolerance)))
	}
	panicWant := ceilDiv(m.PanicConcurrency, target)
	desired = stableWant
	reason = fmt.Sprintf("concurrency %.1f over %s at target %g", m.StableConcurrency, spec.StableWindow.Duration, target)

	// Panic mode.
	var ratio float64
	if m.Ready > 0 {
		ratio = m.PanicConcurrency / (target * float64(m.Ready))
	}
	switch {
	case m.Ready > 0 && ratio >= spec.PanicThreshold/100:
		if next.PanicSince.IsZero() {
			next.PanicSince = now
		}
		next.PanicTriggered = now
	case next.Panicking() && now.Sub(next.PanicTriggered) >= spec.StableWindow.Duration:
		next.PanicSince, next.PanicTriggered = time.Time{}, time.Time{}
	}
	if next.Panicking() {
		desired = max(stableWant, panicWant, st.Desired)
		if m.Ready > 0 {
			reason = fmt.Sprintf("panic: demand %.1fx capacity", ratio)
		} else {
			reason = "panic: no ready replicas"
		}
	}

	// Requests in flight hold replicas up: never scale down below what they
	// need. They do not push desired up here; the instantaneous count is
	// noisy and would start and stop replicas every tick. The windows (the
	// panic window within a tick or two) drive scale-up.
	if floor := min(st.Desired, inFlightNeed); desired < floor {
		desired = floor
		reason = fmt.Sprintf("%d %s in flight: holding %d", m.InFlight, plural(m.InFlight, "request", "requests"), floor)
	}

	// Scale to zero once idle; until then keep one replica if there is one.
	if m.InFlight == 0 && idleFor >= spec.ScaleToZeroAfter.Duration && spec.MinReplicas == 0 {
		next.PanicSince, next.PanicTriggered = time.Time{}, time.Time{}
		if st.Desired > 0 {
			reason = fmt.Sprintf("idle for %s: scale to zero", idleFor.Round(time.Second))
		} else {
			reason = "idle: no requests"
		}
		return finish(now, spec, st, next, 0, reason)
	}
	if desired == 0 && st.Desired == 0 {
		reason = "idle: no requests"
	}
	if desired == 0 && st.Desired > 0 && spec.MinReplicas == 0 {
		desired = 1
		reason = fmt.Sprintf("keeping 1: last active %s ago, scale to zero after %s",
			idleFor.Round(time.Second), spec.ScaleToZeroAfter.Duration)
	}

	// Rate limits.
	if floor := ceilDiv(float64(st.Desired), MaxScaleDownRate); desired < floor {
		reason = fmt.Sprintf("scale down limited to half: %d, wants %d", floor, desired)
		desired = floor
	}
	ceiling := max(int64(st.Desired), MaxScaleUpRate*int64(max(1, m.Ready)))
	if int64(desired) > ceiling {
		reason = fmt.Sprintf("scale up limited to %dx ready: %d, wants %d", MaxScaleUpRate, ceiling, desired)
		desired = int32(ceiling)
	}
	return finish(now, spec, st, next, desired, reason)
}

// finish clamps desired to the spec's bounds and completes the decision.
func finish(now time.Time, spec serving.Scaling, prev, next State, desired int32, reason string) Decision {
	if desired > spec.MaxReplicas {
		reason = fmt.Sprintf("capped at maxReplicas %d (%s)", spec.MaxReplicas, reason)
		desired = spec.MaxReplicas
	}
	if desired < spec.MinReplicas {
		reason = fmt.Sprintf("minReplicas %d (%s)", spec.MinReplicas, reason)
		desired = spec.MinReplicas
	}
	next.Desired = desired
	if desired != prev.Desired {
		next.LastChange = now
	}
	return Decision{Desired: desired, State: next, Panic: next.Panicking(), Reason: reason}
}

// normalize fills fields an unvalidated spec may leave unusable with the
// serving defaults, so Decide never divides by zero.
func normalize(s serving.Scaling) serving.Scaling {
	if s.TargetConcurrency <= 0 {
		s.TargetConcurrency = serving.DefaultTargetConcurrency
	}
	if s.StableWindow.Duration <= 0 {
		s.StableWindow = serving.D(serving.DefaultStableWindow)
	}
	if s.PanicWindowPercent <= 0 || s.PanicWindowPercent > 100 {
		s.PanicWindowPercent = serving.DefaultPanicWindowPercent
	}
	if s.PanicThreshold <= 100 {
		s.PanicThreshold = serving.DefaultPanicThreshold
	}
	if s.MinReplicas < 0 {
		s.MinReplicas = 0
	}
	if s.MaxReplicas <= 0 {
		s.MaxReplicas = max(serving.DefaultMaxReplicas, s.MinReplicas)
	}
	if s.MaxReplicas < s.MinReplicas {
		s.MaxReplicas = s.MinReplicas
	}
	return s
}

// panicWindow returns the length of spec's panic window.
func panicWindow(spec serving.Scaling) time.Duration {
	return time.Duration(float64(spec.StableWindow.Duration) * spec.PanicWindowPercent / 100)
}

// ceilDiv returns ceil(v / target) as an int32, saturating at MaxInt32.
func ceilDiv(v, target float64) int32 {
	q := math.Ceil(v/target - 1e-9)
	switch {
	case q <= 0 || math.IsNaN(q):
		return 0
	case q >= math.MaxInt32:
		return math.MaxInt32
	}
	return int32(q)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
