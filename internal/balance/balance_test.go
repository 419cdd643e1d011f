package balance

import (
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// seq returns an IntN that yields the given values in turn.
func seq(vals ...int) func(int) int {
	return func(n int) int {
		v := vals[0]
		vals = vals[1:]
		if v >= n {
			panic("test asked for a value out of range")
		}
		return v
	}
}

func endpoints(load ...int64) []*Endpoint {
	eps := make([]*Endpoint, len(load))
	for i, l := range load {
		eps[i] = NewEndpoint(string(rune('a'+i)), "")
		eps[i].inFlight.Store(l)
	}
	return eps
}

func TestPowerOfTwoPick(t *testing.T) {
	tests := []struct {
		name    string
		load    []int64
		draws   []int
		exclude string
		want    string // "" means nil
	}{
		{name: "no endpoints", load: nil, want: ""},
		{name: "one endpoint", load: []int64{5}, want: "a"},
		{name: "second of pair less loaded", load: []int64{3, 1, 0}, draws: []int{0, 0}, want: "b"},
		{name: "first of pair less loaded", load: []int64{0, 1, 9}, draws: []int{0, 1}, want: "a"},
		{name: "second draw skips the first", load: []int64{4, 4, 1}, draws: []int{1, 1}, want: "c"},
		{name: "tie keeps the first", load: []int64{2, 2}, draws: []int{1, 0}, want: "b"},
		{name: "excluded endpoint never picked", load: []int64{0, 7}, exclude: "a", want: "b"},
		{name: "all excluded", load: []int64{0}, exclude: "a", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := PowerOfTwo{IntN: seq(append(tt.draws, 0, 0)...)}
			var ex func(*Endpoint) bool
			if tt.exclude != "" {
				ex = func(e *Endpoint) bool { return e.ID == tt.exclude }
			}
			got := p.Pick(endpoints(tt.load...), ex)
			gotID := ""
			if got != nil {
				gotID = got.ID
			}
			if gotID != tt.want {
				t.Errorf("Pick = %q, want %q", gotID, tt.want)
			}
		})
	}
}

// TestPowerOfTwoSpreadsLoad checks the property the policy exists for: with
// requests held open, load ends up nearly even and no endpoint is starved.
func TestPowerOfTwoSpreadsLoad(t *testing.T) {
	// A uniformly random choice of one endpoint spreads 1000 requests over
	// 5 endpoints with a gap of dozens; two choices keep it to a few.
	rng := rand.New(rand.NewPCG(1, 2))
	eps := endpoints(0, 0, 0, 0, 0)
	p := PowerOfTwo{IntN: rng.IntN}
	for range 1000 {
		p.Pick(eps, nil).Acquire()
	}
	lo, hi := eps[0].InFlight(), eps[0].InFlight()
	for _, e := range eps {
		lo, hi = min(lo, e.InFlight()), max(hi, e.InFlight())
	}
	if hi-lo > 4 {
		t.Errorf("in-flight spread %d..%d after 1000 held picks; want within 4", lo, hi)
	}
}

func TestAcquireRelease(t *testing.T) {
	e := NewEndpoint("a", "http://127.0.0.1:1")
	e.Acquire()
	e.Acquire()
	e.Release()
	if diff := cmp.Diff(int64(1), e.InFlight()); diff != "" {
		t.Errorf("InFlight (-want +got):\n%s", diff)
	}
}
