// Package simulate replays a request trace through ebb's real autoscaler
// (internal/autoscale: Observe, Decide and the schedule's Scheduled) with a
// simulated clock, and reports what scaling to zero cost and saved: the
// replica-seconds used against always-on at the peak, the requests that
// met a latency objective, and every cold start. A week replays in
// seconds.
//
// The model is the control loop's: every second the demand of the second
// goes into a stats.Window and the autoscaler decides; the activator pokes
// a decision at once when a request arrives with nothing desired. A
// replica wanted becomes ready a cold start later (drawn from the given
// cold starts in turn) and takes up to Capacity requests at once; a
// request waits for a free slot (held while cold) and then takes a service
// time (drawn in turn). A replica scaled down leaves at once, after its
// requests end. What it does not model: gateways, network, replica
// crashes, and cold starts that vary with load.
package simulate

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/ebb-ml/ebb/internal/autoscale"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
)

// Config is one replay.
type Config struct {
	// Scaling is the deployment's policy, schedule included.
	Scaling serving.Scaling
	// Start is the simulated time of the trace's first second (schedules
	// read wall-clock time from it).
	Start time.Time
	// ColdStarts and ServiceTimes are drawn in turn, round robin; at
	// least one each.
	ColdStarts   []time.Duration
	ServiceTimes []time.Duration
	// Capacity is the requests one replica serves at once; default twice
	// the target concurrency.
	Capacity int
	// SLO is the latency objective a request meets or not.
	SLO time.Duration
	// Seed makes arrival times within each second repeatable.
	Seed uint64
}

// Trace gives the requests that arrive in each second of the replay.
type Trace interface {
	// Seconds is the trace's length.
	Seconds() int
	// Arrivals is the number of requests arriving in second s.
	Arrivals(s int) int
}

// Report is what a replay measured.
type Report struct {
	Seconds        int
	Requests       int64
	MetSLO         int64 // latency within the SLO
	ColdRequests   int64 // arrived while no replica was ready
	MetSLOWarm     int64 // of those that found a replica ready
	Warm           int64
	ColdStarts     int
	ColdStartTime  time.Duration // summed over cold starts
	ReplicaSeconds float64       // replicas existing (starting or ready), integrated
	PeakReplicas   int32
	// AlwaysOnSeconds is PeakReplicas for the whole trace: what running
	// the peak all the time would use.
	AlwaysOnSeconds float64
	P50, P99        time.Duration
	MaxWait         time.Duration
}

// MetSLOPercent is the share of requests within the SLO, and
// MetSLOWarmPercent that of the requests that found a replica ready.
func (r Report) MetSLOPercent() float64     { return pct(r.MetSLO, r.Requests) }
func (r Report) MetSLOWarmPercent() float64 { return pct(r.MetSLOWarm, r.Warm) }

// Reduction is the replica-seconds used over always-on's (0..1; lower is
// better).
func (r Report) Reduction() float64 {
	if r.AlwaysOnSeconds == 0 {
		return 0
	}
	return r.ReplicaSeconds / r.AlwaysOnSeconds
}

// String is a short summary.
func (r Report) String() string {
	return fmt.Sprintf("%d requests over %s; replica-seconds %.0f vs always-on %.0f (peak %d): reduction %.3f; SLO met by %.2f%% (%.2f%% of those that found a replica ready); %d cold starts (%d requests held while cold, longest wait %s); p50 %s, p99 %s",
		r.Requests, time.Duration(r.Seconds)*time.Second, r.ReplicaSeconds, r.AlwaysOnSeconds, r.PeakReplicas, r.Reduction(),
		r.MetSLOPercent(), r.MetSLOWarmPercent(), r.ColdStarts, r.ColdRequests, r.MaxWait.Round(time.Millisecond), r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond))
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 100
	}
	return 100 * float64(a) / float64(b)
}

type replica struct {
	readyAt   time.Time
	announced bool // its readiness was played (advance)
	busy      int
	leaving   bool
}

// waiting is a request held for a free slot.
type waiting struct {
	arrived time.Time
	cold    bool
}

type sim struct {
	cfg      Config
	rec      stats.Recorder
	win      *stats.Window
	st       autoscale.State
	replicas []*replica
	queue    []waiting
	ends     endHeap
	cold     int // next cold start drawn
	service  int // next service time drawn
	latency  []time.Duration
	rep      Report
}

// Run replays trace under cfg.
func Run(cfg Config, trace Trace) (Report, error) {
	if len(cfg.ColdStarts) == 0 || len(cfg.ServiceTimes) == 0 {
		return Report{}, fmt.Errorf("simulate: give at least one cold start and one service time")
	}
	sc := cfg.Scaling
	if sc.TargetConcurrency <= 0 {
		sc.TargetConcurrency = serving.DefaultTargetConcurrency
	}
	if sc.StableWindow.Duration <= 0 {
		sc.StableWindow = serving.D(serving.DefaultStableWindow)
	}
	cfg.Scaling = sc
	if cfg.Capacity <= 0 {
		cfg.Capacity = int(math.Ceil(2 * sc.TargetConcurrency))
	}
	s := &sim{cfg: cfg, win: stats.NewWindow(sc.StableWindow.Duration + 2*time.Second)}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	n := trace.Seconds()
	for sec := range n {
		start := cfg.Start.Add(time.Duration(sec) * time.Second)
		k := trace.Arrivals(sec)
		arrivals := make([]time.Time, k)
		for i := range arrivals {
			arrivals[i] = start.Add(time.Duration(rng.Int64N(int64(time.Second))))
		}
		slices.SortFunc(arrivals, func(a, b time.Time) int { return a.Compare(b) })
		for _, a := range arrivals {
			s.advance(a)
			s.rec.Begin(a)
			s.rep.Requests++
			cold := s.ready(a) == 0
			if cold {
				s.rep.ColdRequests++
			} else {
				s.rep.Warm++
			}
			s.queue = append(s.queue, waiting{arrived: a, cold: cold})
			if cold {
				s.decide(a) // each held request wakes the control loop at once
			}
			s.dispatch(a)
		}
		tick := start.Add(time.Second)
		s.advance(tick)
		s.win.Add(s.rec.Sample(tick))
		s.decide(tick)
		s.dispatch(tick)
		existing := int32(0)
		for _, r := range s.replicas {
			if !r.leaving || r.busy > 0 {
				existing++
			}
		}
		s.rep.ReplicaSeconds += float64(existing)
		s.rep.PeakReplicas = max(s.rep.PeakReplicas, existing)
	}
	// Let what is in flight finish.
	end := cfg.Start.Add(time.Duration(n)*time.Second + time.Hour)
	s.advance(end)
	s.rep.Seconds = n
	s.rep.AlwaysOnSeconds = float64(s.rep.PeakReplicas) * float64(n)
	if len(s.latency) > 0 {
		slices.Sort(s.latency)
		s.rep.P50 = s.latency[len(s.latency)/2]
		s.rep.P99 = s.latency[min(len(s.latency)-1, len(s.latency)*99/100)]
	}
	return s.rep, nil
}

// advance plays the events due by t in order: requests that end, freeing
// their slots, and replicas that become ready; queued requests start on
// the slots as they free.
func (s *sim) advance(t time.Time) {
	for {
		var ready *replica
		for _, r := range s.replicas {
			if !r.announced && !r.readyAt.After(t) && (ready == nil || r.readyAt.Before(ready.readyAt)) {
				ready = r
			}
		}
		switch {
		case len(s.ends) > 0 && !s.ends[0].at.After(t) && (ready == nil || !ready.readyAt.Before(s.ends[0].at)):
			e := heap.Pop(&s.ends).(end)
			e.r.busy--
			s.rec.End(e.at)
			s.dispatch(e.at)
			continue
		case ready != nil:
			ready.announced = true
			s.dispatch(ready.readyAt)
			continue
		}
		break
	}
	s.dispatch(t)
	s.replicas = slices.DeleteFunc(s.replicas, func(r *replica) bool { return r.leaving && r.busy == 0 })
}

func (s *sim) ready(t time.Time) int {
	n := 0
	for _, r := range s.replicas {
		if !r.leaving && !r.readyAt.After(t) {
			n++
		}
	}
	return n
}

// dispatch starts queued requests on free slots of ready replicas at t.
func (s *sim) dispatch(t time.Time) {
	for len(s.queue) > 0 {
		var best *replica
		for _, r := range s.replicas {
			if !r.leaving && !r.readyAt.After(t) && r.busy < s.cfg.Capacity && (best == nil || r.busy < best.busy) {
				best = r
			}
		}
		if best == nil {
			return
		}
		w := s.queue[0]
		s.queue = s.queue[1:]
		svc := s.cfg.ServiceTimes[s.service%len(s.cfg.ServiceTimes)]
		s.service++
		best.busy++
		heap.Push(&s.ends, end{at: t.Add(svc), r: best})
		lat := t.Sub(w.arrived) + svc
		s.rep.MaxWait = max(s.rep.MaxWait, t.Sub(w.arrived))
		s.latency = append(s.latency, lat)
		if lat <= s.cfg.SLO {
			s.rep.MetSLO++
			if !w.cold {
				s.rep.MetSLOWarm++
			}
		}
	}
}

// decide runs the autoscaler at t, the schedule applied, as the control
// loop does, and adds or removes replicas.
func (s *sim) decide(t time.Time) {
	sc := s.cfg.Scaling
	lead := s.cfg.ColdStarts[max(s.cold-1, 0)%len(s.cfg.ColdStarts)] + time.Second
	b := autoscale.Scheduled(t, sc, lead)
	sc.MinReplicas, sc.MaxReplicas = b.MinReplicas, b.MaxReplicas
	m := autoscale.Observe(t, s.win, s.rec.InFlight(), s.ready(t), sc)
	d := autoscale.Decide(t, sc, m, s.st)
	s.st = d.State
	active := 0
	for _, r := range s.replicas {
		if !r.leaving {
			active++
		}
	}
	for ; active < int(d.Desired); active++ {
		cs := s.cfg.ColdStarts[s.cold%len(s.cfg.ColdStarts)]
		s.cold++
		s.rep.ColdStarts++
		s.rep.ColdStartTime += cs
		s.replicas = append(s.replicas, &replica{readyAt: t.Add(cs)})
	}
	// Scale down: the least ready, then the least busy, leave first.
	for i := len(s.replicas) - 1; i >= 0 && active > int(d.Desired); i-- {
		if r := s.replicas[i]; !r.leaving {
			r.leaving = true
			active--
		}
	}
}

type end struct {
	at time.Time
	r  *replica
}

type endHeap []end

func (h endHeap) Len() int           { return len(h) }
func (h endHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h endHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(x any)        { *h = append(*h, x.(end)) }
func (h *endHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
