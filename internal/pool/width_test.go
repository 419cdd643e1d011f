package pool

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestWiden(t *testing.T) {
	p := Policy{Replicas: 2, TargetInFlight: 4, ShrinkBelow: 0.6, ShrinkAfter: 2 * time.Minute}
	now := at(time.Hour)
	tests := []struct {
		name string
		w    Width
		d    Demand
		n    int
		p    Policy
		want Width
	}{
		{"no demand: base width", Width{}, Demand{}, 8, p, Width{2, now}},
		{"base clamped to the pool", Width{}, Demand{}, 1, p, Width{1, now}},
		{"no replicas", Width{Replicas: 3}, Demand{InFlight: 9}, 0, p, Width{}},
		{"at the target: no growth", Width{}, Demand{InFlight: 8}, 8, p, Width{2, now}},
		{"over the target: grows at once", Width{Replicas: 2, BusyAt: at(0)}, Demand{InFlight: 20}, 8, p, Width{5, now}},
		{"held requests count", Width{}, Demand{InFlight: 2, Held: 10}, 8, p, Width{3, now}},
		{"growth capped at N", Width{}, Demand{InFlight: 100}, 8, p, Width{8, now}},
		{"rate target", Width{}, Demand{Rate: 450}, 8, Policy{Replicas: 2, TargetRate: 100}, Width{5, now}},
		{"within the band: stays, busy", Width{Replicas: 5, BusyAt: at(0)}, Demand{InFlight: 16}, 8, p, Width{5, now}},
		{"low, not for long enough: stays", Width{Replicas: 5, BusyAt: now.Add(-time.Minute)}, Demand{InFlight: 4}, 8, p, Width{5, now.Add(-time.Minute)}},
		{"low since an unknown time: the wait starts", Width{Replicas: 5}, Demand{InFlight: 4}, 8, p, Width{5, now}},
		{"low for ShrinkAfter: narrows with headroom", Width{Replicas: 5, BusyAt: now.Add(-2 * time.Minute)}, Demand{InFlight: 4}, 8, p, Width{2, now}},
		{"idle: back to base", Width{Replicas: 8, BusyAt: now.Add(-time.Hour)}, Demand{}, 8, p, Width{2, now}},
		{"width beyond a shrunk pool", Width{Replicas: 8, BusyAt: now}, Demand{InFlight: 40}, 4, p, Width{4, now}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Widen(now, tt.w, tt.d, tt.n, tt.p)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Widen (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWidenNoFlapping: load that hovers around the target grows the shard
// once and never flips it back and forth; once the load is gone for good,
// the shard narrows after ShrinkAfter.
func TestWidenNoFlapping(t *testing.T) {
	p := Policy{Replicas: 2, TargetInFlight: 4, ShrinkAfter: 2 * time.Minute}
	var w Width
	changes, prev := 0, 0
	for s := range 3600 {
		load := 15.0 + float64(s%3) // 15, 16, 17 around 4 replicas × 4
		w = Widen(at(time.Duration(s)*time.Second), w, Demand{InFlight: load}, 10, p)
		if w.Replicas != prev {
			changes++
			prev = w.Replicas
		}
	}
	if changes > 2 || w.Replicas != 5 {
		t.Errorf("width changed %d times, ending at %d; want it set once to 2, grown once to 5", changes, w.Replicas)
	}
	quietFrom := time.Hour
	for s := range 300 {
		now := at(quietFrom + time.Duration(s)*time.Second)
		w = Widen(now, w, Demand{}, 10, p)
		if s < 119 && w.Replicas != 5 {
			t.Fatalf("narrowed to %d after %ds of quiet, before ShrinkAfter", w.Replicas, s)
		}
	}
	if w.Replicas != 2 {
		t.Errorf("after 5 quiet minutes the width is %d, want the base 2", w.Replicas)
	}
}
