package traffic

import (
	"math"
	"math/rand/v2"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// version is how a simulated version answers.
type version struct {
	latency  time.Duration // median; the spread is lognormal with σ 0.15
	failRate float64
}

// move is one decision other than Wait, at a time since the start.
type move struct {
	At     time.Duration
	Action Action
	Weight int
}

// replay runs a rollout over simulated time: perSecond requests a second
// are split by the canary's weight through a Split, served by the two
// versions, counted in a Meter each, and judged by Decide every 10 seconds
// over the step so far. It stops when the rollout ends or after limit.
func replay(t *testing.T, p Policy, perSecond float64, canary, primary version, limit time.Duration) (State, []move) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	meters := []*Meter{NewMeter(0, 0), NewMeter(0, 0)} // canary, primary
	versions := []version{canary, primary}
	s, err := Start(t0, p)
	if err != nil {
		t.Fatal(err)
	}
	var moves []move
	carry := 0.0
	for sec := time.Duration(0); sec < limit && !s.Phase.Final(); sec += time.Second {
		split, err := NewSplit([]Target{{"canary", s.Weight}, {"primary", 100 - s.Weight}})
		if err != nil {
			t.Fatal(err)
		}
		carry += perSecond
		n := int(carry)
		carry -= float64(n)
		for i := range n {
			at := t0.Add(sec + time.Duration(i)*time.Second/time.Duration(n))
			v := split.Pick(rng.Uint64())
			lat := time.Duration(float64(versions[v].latency) * math.Exp(0.15*rng.NormFloat64()))
			meters[v].Observe(at, lat, rng.Float64() < versions[v].failRate)
		}
		now := t0.Add(sec + time.Second)
		if (sec+time.Second)%(10*time.Second) != 0 {
			continue
		}
		d := Decide(now, p, s, meters[0].Snapshot(s.StepStarted, now), meters[1].Snapshot(s.StepStarted, now))
		if d.Action != Wait {
			moves = append(moves, move{now.Sub(t0), d.Action, d.Weight})
		}
		s = Apply(now, s, d)
	}
	return s, moves
}

func TestReplayGoodCanaryIsPromotedThroughEveryStep(t *testing.T) {
	// The primary fails now and then; the canary not at all, since with the
	// default policy one failure among its first 100 requests at the
	// end of a step is above 1% and rolls it back.
	primary := version{latency: 20 * time.Millisecond, failRate: 0.001}
	good := version{latency: 20 * time.Millisecond}
	s, moves := replay(t, DefaultPolicy(), 20, good, primary, time.Hour)
	want := []move{
		{time.Minute, Advance, 25},
		{2 * time.Minute, Advance, 50},
		{3 * time.Minute, Promote, 100},
	}
	if diff := cmp.Diff(want, moves); diff != "" {
		t.Errorf("moves (-want +got):\n%s", diff)
	}
	if s.Phase != Succeeded || s.Weight != 100 || len(s.History) != 3 {
		t.Fatalf("end state %+v, want Succeeded at 100%% with three step results", s)
	}
	for _, r := range s.History {
		if r.Canary.Requests < DefaultMinRequests || r.Primary.Requests < DefaultMinRequests {
			t.Errorf("step %d passed on %d canary and %d primary requests", r.Step+1, r.Canary.Requests, r.Primary.Requests)
		}
		// The canary's share of the step's requests follows its weight.
		n := float64(r.Canary.Requests + r.Primary.Requests)
		share := float64(r.Canary.Requests) / n * 100
		w := float64(r.Weight) / 100
		if math.Abs(share-float64(r.Weight)) > 4*math.Sqrt(w*(1-w)/n)*100 {
			t.Errorf("step %d: canary served %.1f%% of requests at weight %d%%", r.Step+1, share, r.Weight)
		}
	}
}

func TestReplayFailingCanaryIsRolledBackAtItsFirstStep(t *testing.T) {
	good := version{latency: 20 * time.Millisecond}
	failing := version{latency: 20 * time.Millisecond, failRate: 0.2}
	s, moves := replay(t, DefaultPolicy(), 20, failing, good, time.Hour)
	if len(moves) != 1 || moves[0].Action != Rollback || moves[0].At >= DefaultInterval {
		t.Fatalf("moves = %+v, want one Rollback before the first interval is over", moves)
	}
	if s.Phase != RolledBack || s.Weight != 0 || s.Step != 0 {
		t.Errorf("end state %+v, want RolledBack at step 0, weight 0", s)
	}
	if !regexp.MustCompile(`^canary error rate \d+\.\d% > max 1\.0% over \d+ requests$`).MatchString(s.Reason) {
		t.Errorf("reason %q does not name the error rate, its bound and the requests", s.Reason)
	}
	if len(s.History) != 1 || s.History[0].Outcome != Rollback || s.History[0].Canary.ErrorRate <= DefaultMaxErrorRate {
		t.Errorf("history %+v, want the first step rolled back on its measured error rate", s.History)
	}
}

func TestReplaySlowCanaryIsRolledBackOnItsP99(t *testing.T) {
	good := version{latency: 20 * time.Millisecond}
	slow := version{latency: 60 * time.Millisecond}
	s, moves := replay(t, DefaultPolicy(), 20, slow, good, time.Hour)
	if diff := cmp.Diff([]move{{time.Minute, Rollback, 0}}, moves); diff != "" {
		t.Errorf("moves (-want +got):\n%s", diff)
	}
	if !regexp.MustCompile(`^canary p99 [0-9.]+ms > 1\.5 × primary p99 [0-9.]+ms \([0-9.]+×\) over \d+ and \d+ requests$`).MatchString(s.Reason) {
		t.Errorf("reason %q does not name both p99s and the bound", s.Reason)
	}
}

func TestReplayNoTrafficStaysAtTheFirstStep(t *testing.T) {
	good := version{latency: 20 * time.Millisecond}
	s, moves := replay(t, DefaultPolicy(), 0, good, good, 2*time.Hour)
	if len(moves) != 0 {
		t.Errorf("moves = %+v with no traffic, want none", moves)
	}
	want := State{Phase: Progressing, Weight: 5, StepStarted: t0, Reason: "only 0 of 20 requests to the canary in this step"}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("state after two hours without traffic (-want +got):\n%s", diff)
	}
}

func TestReplayLowTrafficWaitsThenAdvances(t *testing.T) {
	// Two requests a second: the canary gets about 6 a minute at 5%, so its
	// first step waits past the interval for 20 requests.
	good := version{latency: 20 * time.Millisecond}
	s, moves := replay(t, DefaultPolicy(), 2, good, good, time.Hour)
	if s.Phase != Succeeded {
		t.Fatalf("end state %+v, want Succeeded", s)
	}
	if len(moves) != 3 || moves[0].At <= DefaultInterval {
		t.Errorf("moves = %+v, want three, the first after more than one interval", moves)
	}
}
