package autoscale

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
)

// endHeap holds the end times of requests being served.
type endHeap []time.Time

func (h endHeap) Len() int           { return len(h) }
func (h endHeap) Less(i, j int) bool { return h[i].Before(h[j]) }
func (h endHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(x any)        { *h = append(*h, x.(time.Time)) }
func (h *endHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// replayTrace is the target concurrency for each second of an hour:
// quiet, a slow wave, a spike, on/off flapping, quiet, a trickle, quiet.
func replayTrace(s int) float64 {
	switch {
	case s < 300:
		return 0
	case s < 900: // wave between 0 and 60
		return 30 - 30*math.Cos(2*math.Pi*float64(s-300)/600)
	case s < 1200: // steady with a spike of 200 in the middle
		if s >= 1000 && s < 1030 {
			return 200
		}
		return 16
	case s < 1800: // 5s on, 5s off
		if (s/5)%2 == 0 {
			return 10
		}
		return 0
	case s < 2400:
		return 0
	case s < 3000: // a trickle: one short request every 20s
		if s%20 == 0 {
			return 0.2 // exactly one request of 200ms
		}
		return 0
	default:
		return 0
	}
}

// replayer simulates one deployment: requests of a fixed service time
// arrive at random, are held while no replica is ready (the activator),
// and the control loop samples and decides every second. Replicas are ready
// coldStart after they are wanted.
type replayer struct {
	spec      serving.Scaling
	coldStart time.Duration
	service   time.Duration

	rec     stats.Recorder
	win     *stats.Window
	st      State
	readyAt []time.Time // one per desired replica
	held    []time.Time // arrival times of held requests
	ends    endHeap

	// restartAt is the second at which the control loop restarts: the
	// window is lost and the state keeps only the desired count (as stored).
	restartAt int

	decisions []replayDecision
	maxWait   time.Duration
	lastEnd   time.Time
}

type replayDecision struct {
	at       time.Time
	d        Decision
	inFlight int
	poke     bool
}

func (r *replayer) ready(now time.Time) int {
	n := 0
	for _, t := range r.readyAt {
		if !t.After(now) {
			n++
		}
	}
	return n
}

func (r *replayer) decide(now time.Time, poke bool) {
	m := Observe(now, r.win, r.rec.InFlight(), r.ready(now), r.spec)
	d := Decide(now, r.spec, m, r.st)
	r.st = d.State
	for len(r.readyAt) < int(d.Desired) {
		r.readyAt = append(r.readyAt, now.Add(r.coldStart))
	}
	// Scale down removes the newest (least ready) replicas first.
	r.readyAt = r.readyAt[:d.Desired]
	r.decisions = append(r.decisions, replayDecision{at: now, d: d, inFlight: m.InFlight, poke: poke})
}

// serveHeld starts serving held requests if a replica is ready at now.
func (r *replayer) serveHeld(now time.Time) {
	if len(r.held) == 0 || r.ready(now) == 0 {
		return
	}
	for _, arrived := range r.held {
		r.maxWait = max(r.maxWait, now.Sub(arrived))
		heap.Push(&r.ends, now.Add(r.service))
	}
	r.held = r.held[:0]
}

// endUntil ends every request due by t.
func (r *replayer) endUntil(t time.Time) {
	for len(r.ends) > 0 && !r.ends[0].After(t) {
		e := heap.Pop(&r.ends).(time.Time)
		r.rec.End(e)
		r.lastEnd = e
	}
}

func (r *replayer) run(seconds int, trace func(int) float64, rng *rand.Rand) {
	for s := range seconds {
		start := sec(float64(s))
		if s == r.restartAt && s > 0 {
			r.win = stats.NewWindow(r.spec.StableWindow.Duration)
			r.st = State{Desired: r.st.Desired}
		}
		// Arrivals for a mean concurrency c with this service time.
		rate := trace(s) / r.service.Seconds()
		n := 0
		if rate > 0 {
			// Round the expected count at random so small rates still
			// produce requests.
			n = int(rate)
			if rng.Float64() < rate-float64(n) {
				n++
			}
		}
		arrivals := make([]time.Time, n)
		for i := range arrivals {
			arrivals[i] = start.Add(time.Duration(rng.Int64N(int64(time.Second))))
		}
		slices.SortFunc(arrivals, func(a, b time.Time) int { return a.Compare(b) })
		for _, a := range arrivals {
			r.endUntil(a)
			r.serveHeld(a)
			r.rec.Begin(a)
			if r.ready(a) == 0 {
				r.held = append(r.held, a)
				if r.st.Desired == 0 {
					r.decide(a, true) // the activator pokes the control loop
				}
				continue
			}
			heap.Push(&r.ends, a.Add(r.service))
		}
		tick := start.Add(time.Second)
		r.endUntil(tick)
		r.serveHeld(tick)
		r.win.Add(r.rec.Sample(tick))
		r.decide(tick, false)
	}
}

func TestReplayHour(t *testing.T) {
	spec := testSpec()
	spec.MaxReplicas = 10
	r := &replayer{
		spec:      spec,
		coldStart: 4 * time.Second,
		service:   200 * time.Millisecond,
		win:       stats.NewWindow(spec.StableWindow.Duration),
		restartAt: 1150, // under steady load of 16
	}
	const hour = 3600
	r.run(hour, replayTrace, rand.New(rand.NewPCG(1, 2)))

	if len(r.decisions) < hour {
		t.Fatalf("%d decisions, want at least one per second (%d)", len(r.decisions), hour)
	}
	var pokes, panics, changes, toZero int
	var peak int32
	prev := int32(0)
	for _, rd := range r.decisions {
		d := rd.d.Desired
		if d > spec.MaxReplicas || d < spec.MinReplicas {
			t.Fatalf("%v: desired %d outside [%d, %d]", rd.at, d, spec.MinReplicas, spec.MaxReplicas)
		}
		if rd.inFlight > 0 && d == 0 {
			t.Fatalf("%v: desired 0 with %d requests in flight", rd.at, rd.inFlight)
		}
		if rd.poke {
			pokes++
			if d == 0 {
				t.Errorf("%v: a poke for a held request left desired at 0", rd.at)
			}
		}
		if rd.d.Panic {
			panics++
		}
		if d != prev {
			changes++
			if d == 0 {
				toZero++
			}
		}
		peak = max(peak, d)
		prev = d
	}
	at := func(s int) int32 {
		// The tick decision at the end of second s-1 is taken at sec(s).
		for _, rd := range r.decisions {
			if rd.at.Equal(sec(float64(s))) && !rd.poke {
				return rd.d.Desired
			}
		}
		t.Fatalf("no decision at second %d", s)
		return 0
	}

	// Every quiet stretch longer than ScaleToZeroAfter ends at zero.
	for _, s := range []int{299, 2399, 3599} {
		if d := at(s); d != 0 {
			t.Errorf("second %d: desired %d after a long quiet stretch, want 0", s, d)
		}
	}
	// The flapping stretch (gaps of 5s) never reaches zero.
	for s := 1201; s < 1800; s++ {
		if d := at(s); d == 0 {
			t.Fatalf("second %d: scaled to zero during on/off traffic", s)
		}
	}
	// The spike hits the cap and panics.
	if peak != spec.MaxReplicas {
		t.Errorf("peak desired %d, want the cap %d during the spike", peak, spec.MaxReplicas)
	}
	if panics == 0 {
		t.Errorf("never panicked during a spike from 16 to 200")
	}
	// Scaling to zero happens once per long quiet stretch that follows
	// traffic: after the flapping (1800) and after the trickle (3000); each
	// trickle request (20s apart) is too close to the next for zero.
	if toZero != 2 {
		t.Errorf("scaled to zero %d times, want 2", toZero)
	}
	// Held requests wait no longer than a cold start plus a tick.
	if r.maxWait > r.coldStart+time.Second {
		t.Errorf("a held request waited %v, want at most %v", r.maxWait, r.coldStart+time.Second)
	}
	if pokes == 0 {
		t.Errorf("no activator pokes: the trace never started from zero")
	}
	// A restart loses the window but does not scale down on missing data.
	if before, after := at(1150), at(1151); after < before {
		t.Errorf("desired fell from %d to %d on the first decision after a restart", before, after)
	}
	if changes > 40 {
		t.Errorf("%d changes of desired in an hour: thrashing", changes)
	}
	// The last request ended long before the end; nothing is left waiting.
	if len(r.held) != 0 || r.rec.InFlight() != 0 {
		t.Errorf("%d held and %d in flight at the end, want none", len(r.held), r.rec.InFlight())
	}
	t.Logf("%d decisions, %d pokes, %d changes, peak %d, %d panicking, max wait %v",
		len(r.decisions), pokes, changes, peak, panics, r.maxWait)
}
