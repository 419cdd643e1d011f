package autoscale

import (
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
)

// step is one simulated second: the load and the decision taken at its end.
type step struct {
	sec      int
	conc     float64
	inFlight int
	ready    int
	d        Decision
}

// loadFunc gives the average concurrency over the second ending at s and
// the requests in flight at s.
type loadFunc func(s int) (conc float64, inFlight int)

// drive simulates n seconds of the control loop with a fake clock: each
// second a Sample goes into a Window, then Observe and Decide run. Replicas
// become ready coldStart seconds after they are wanted and leave at once.
func drive(spec serving.Scaling, n, coldStart int, load loadFunc) []step {
	w := stats.NewWindow(spec.StableWindow.Duration)
	var st State
	desired := []int32{0} // desired[s] is the decision at second s
	steps := make([]step, 0, n)
	for s := 1; s <= n; s++ {
		now := sec(float64(s))
		ready := desired[s-1]
		for k := max(0, s-1-coldStart); k < s; k++ {
			ready = min(ready, desired[k])
		}
		conc, inFlight := load(s)
		reqs := 0
		if conc > 0 {
			reqs = 1
		}
		w.Add(stats.Sample{At: now, Concurrency: conc, Requests: reqs})
		d := Decide(now, spec, Observe(now, w, inFlight, int(ready), spec), st)
		st = d.State
		desired = append(desired, d.Desired)
		steps = append(steps, step{sec: s, conc: conc, inFlight: inFlight, ready: int(ready), d: d})
	}
	return steps
}

// constant returns a load of c requests in flight during [from, to).
func constant(c float64, from, to int) loadFunc {
	return func(s int) (float64, int) {
		if s >= from && s < to {
			return c, int(c)
		}
		return 0, 0
	}
}

// sequence plays loads one after another.
func sequence(parts ...loadFunc) loadFunc {
	return func(s int) (float64, int) {
		var conc float64
		var inFlight int
		for _, p := range parts {
			c, f := p(s)
			conc, inFlight = conc+c, inFlight+f
		}
		return conc, inFlight
	}
}

// flapping is c in flight for on seconds, then nothing for off seconds,
// from start until end.
func flapping(c float64, on, off, start, end int) loadFunc {
	return func(s int) (float64, int) {
		if s < start || s >= end || (s-start)%(on+off) >= on {
			return 0, 0
		}
		return c, int(c)
	}
}

// checkInvariants checks what must hold at every step of every scenario.
func checkInvariants(t *testing.T, spec serving.Scaling, steps []step) {
	t.Helper()
	prev := int32(0)
	for _, s := range steps {
		d := s.d.Desired
		if d < spec.MinReplicas || d > spec.MaxReplicas {
			t.Errorf("second %d: desired %d outside [%d, %d]", s.sec, d, spec.MinReplicas, spec.MaxReplicas)
		}
		if s.inFlight > 0 && d == 0 {
			t.Errorf("second %d: desired 0 with %d requests in flight", s.sec, s.inFlight)
		}
		if d > 0 && d < (prev+1)/2 && d != spec.MinReplicas {
			t.Errorf("second %d: scaled down from %d to %d, more than half", s.sec, prev, d)
		}
		prev = d
	}
}

func desiredAt(steps []step, s int) int32 { return steps[s-1].d.Desired }

func changes(steps []step, from, to int) int {
	n := 0
	for s := max(from, 2); s <= to; s++ {
		if desiredAt(steps, s) != desiredAt(steps, s-1) {
			n++
		}
	}
	return n
}

func TestScenarios(t *testing.T) {
	tests := []struct {
		name      string
		spec      serving.Scaling
		n         int
		coldStart int
		load      loadFunc
		check     func(t *testing.T, steps []step)
	}{
		{
			name:      "burst from zero",
			spec:      testSpec(),
			n:         200,
			coldStart: 3,
			load:      constant(40, 10, 70),
			check: func(t *testing.T, steps []step) {
				if got := desiredAt(steps, 9); got != 0 {
					t.Errorf("desired before the burst = %d, want 0", got)
				}
				if r := steps[9].d.Reason; r != "scale from zero: 40 requests waiting" {
					t.Errorf("reason at the burst = %q", r)
				}
				for s := 10; s < 70; s++ {
					if got := desiredAt(steps, s); got != 5 {
						t.Fatalf("second %d: desired %d during a steady burst of 40 at target 8, want 5", s, got)
					}
				}
				if got := desiredAt(steps, 200); got != 0 {
					t.Errorf("desired long after the burst = %d, want 0", got)
				}
			},
		},
		{
			name:      "steady load",
			spec:      testSpec(),
			n:         600,
			coldStart: 3,
			load:      constant(20, 1, 1000),
			check: func(t *testing.T, steps []step) {
				for _, s := range steps {
					if s.d.Desired != 3 || s.d.Panic {
						t.Fatalf("second %d: desired %d panic %v, want a steady 3 (%s)", s.sec, s.d.Desired, s.d.Panic, s.d.Reason)
					}
				}
			},
		},
		{
			name:      "spike panics and holds for the stable window",
			spec:      testSpec(),
			n:         400,
			coldStart: 3,
			load:      sequence(constant(6, 1, 120), constant(48, 120, 130), constant(6, 130, 1000)),
			check: func(t *testing.T, steps []step) {
				first, lastTrigger, end := 0, 0, 0
				for _, s := range steps {
					if s.d.Panic && first == 0 {
						first = s.sec
					}
					if s.d.State.PanicTriggered.Equal(sec(float64(s.sec))) {
						lastTrigger = s.sec
					}
					if first != 0 && !s.d.Panic && end == 0 {
						end = s.sec
					}
				}
				if first < 120 || first > 125 {
					t.Fatalf("panic began at second %d, want soon after the spike at 120", first)
				}
				if end != lastTrigger+60 {
					t.Errorf("panic ended at second %d, want a stable window (60s) after the last trigger at %d", end, lastTrigger)
				}
				var peak int32
				for s := first; s < end; s++ {
					d := desiredAt(steps, s)
					if d < peak {
						t.Errorf("second %d: scaled down to %d while panicking (peak %d)", s, d, peak)
					}
					peak = max(peak, d)
					if !strings.HasPrefix(steps[s-1].d.Reason, "panic: demand") {
						t.Errorf("second %d: reason %q while panicking", s, steps[s-1].d.Reason)
					}
				}
				if peak < 6 {
					t.Errorf("peak desired %d during a spike of 48 at target 8, want at least 6", peak)
				}
				if got := desiredAt(steps, 400); got != 1 {
					t.Errorf("desired after the spike = %d, want 1", got)
				}
			},
		},
		{
			name:      "idle decays to zero after ScaleToZeroAfter and not before",
			spec:      testSpec(),
			n:         300,
			coldStart: 3,
			load:      constant(16, 1, 31), // last active sample at 30
			check: func(t *testing.T, steps []step) {
				for s := 1; s < 90; s++ {
					if d := desiredAt(steps, s); d == 0 {
						t.Fatalf("second %d: scaled to zero %ds after the last request, want 60s", s, s-30)
					}
				}
				if d, r := desiredAt(steps, 90), steps[89].d.Reason; d != 0 || r != "idle for 1m0s: scale to zero" {
					t.Errorf("second 90: desired %d (%q), want 0 (idle for 1m0s: scale to zero)", d, r)
				}
				for s := 90; s <= 300; s++ {
					if d := desiredAt(steps, s); d != 0 {
						t.Fatalf("second %d: desired %d while idle, want 0", s, d)
					}
				}
			},
		},
		{
			name:      "minReplicas never goes to zero",
			spec:      with(func(s *serving.Scaling) { s.MinReplicas = 2 }),
			n:         300,
			coldStart: 3,
			load:      constant(40, 1, 31),
			check: func(t *testing.T, steps []step) {
				if d := desiredAt(steps, 300); d != 2 {
					t.Errorf("desired after idling = %d, want minReplicas 2", d)
				}
				if d := desiredAt(steps, 1); d != 5 {
					t.Errorf("desired under load = %d, want 5", d)
				}
			},
		},
		{
			name:      "maxReplicas caps",
			spec:      with(func(s *serving.Scaling) { s.MaxReplicas = 4 }),
			n:         120,
			coldStart: 3,
			load:      constant(1000, 1, 1000),
			check: func(t *testing.T, steps []step) {
				for _, s := range steps {
					if s.d.Desired != 4 {
						t.Fatalf("second %d: desired %d, want the cap 4", s.sec, s.d.Desired)
					}
					if !strings.HasPrefix(s.d.Reason, "capped at maxReplicas 4") {
						t.Fatalf("second %d: reason %q", s.sec, s.d.Reason)
					}
				}
			},
		},
		{
			name:      "fast flapping does not thrash",
			spec:      testSpec(),
			n:         800,
			coldStart: 3,
			load:      flapping(8, 3, 3, 10, 600),
			check: func(t *testing.T, steps []step) {
				// The last active second is 599: zero is due at 659.
				for s := 10; s < 659; s++ {
					if desiredAt(steps, s) == 0 {
						t.Fatalf("second %d: scaled to zero during on/off traffic", s)
					}
				}
				if n := changes(steps, 10, 658); n > 2 {
					t.Errorf("%d changes of desired during flapping traffic, want at most 2", n)
				}
				if desiredAt(steps, 800) != 0 {
					t.Errorf("desired long after traffic stopped = %d, want 0", desiredAt(steps, 800))
				}
			},
		},
		{
			name:      "slow flapping shorter than ScaleToZeroAfter stays warm",
			spec:      testSpec(),
			n:         900,
			coldStart: 3,
			load:      flapping(30, 10, 50, 10, 900),
			check: func(t *testing.T, steps []step) {
				for s := 10; s <= 900; s++ {
					if desiredAt(steps, s) == 0 {
						t.Fatalf("second %d: scaled to zero in a 50s gap with ScaleToZeroAfter 60s", s)
					}
				}
			},
		},
		{
			name: "scale-down is rate limited",
			spec: with(func(s *serving.Scaling) {
				s.StableWindow = serving.D(6 * time.Second)
				s.ScaleToZeroAfter = serving.D(30 * time.Second)
			}),
			n:         200,
			coldStart: 3,
			load:      sequence(constant(200, 1, 60), constant(6, 60, 120)),
			check: func(t *testing.T, steps []step) {
				if d := desiredAt(steps, 59); d != 25 {
					t.Fatalf("desired under load 200 = %d, want 25", d)
				}
				limited := 0
				for s := 60; s < 120; s++ {
					if strings.HasPrefix(steps[s-1].d.Reason, "scale down limited to half") {
						limited++
					}
				}
				if limited < 2 {
					t.Errorf("%d rate-limited decisions after a drop from 25 to 1 replica, want several", limited)
				}
				if d := desiredAt(steps, 119); d != 1 {
					t.Errorf("desired after the drop = %d, want 1", d)
				}
				if d := desiredAt(steps, 200); d != 0 {
					t.Errorf("desired after idling = %d, want 0", d)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := drive(tt.spec, tt.n, tt.coldStart, tt.load)
			checkInvariants(t, tt.spec, steps)
			tt.check(t, steps)
		})
	}
}
