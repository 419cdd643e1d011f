package autoscale

import (
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func sec(n float64) time.Time { return t0.Add(time.Duration(n * float64(time.Second))) }

// testSpec is a validated default policy: target 8, max 4, stable window 60s,
// panic window 6s, panic at 200%, scale to zero after 60s.
func testSpec() serving.Scaling {
	s := serving.Spec{Model: "m.json"}
	s.Default()
	s.Scaling.MaxReplicas = 100
	return s.Scaling
}

func with(f func(*serving.Scaling)) serving.Scaling {
	s := testSpec()
	f(&s)
	return s
}

// TestDecideOnce checks single decisions against hand-computed answers.
func TestDecideOnce(t *testing.T) {
	now := sec(1000)
	recent := now.Add(-5 * time.Second)
	tests := []struct {
		name       string
		spec       serving.Scaling
		m          Metrics
		st         State
		want       int32
		wantPanic  bool
		wantReason string // substring
	}{
		{
			name:       "scale from zero for waiting requests",
			spec:       testSpec(),
			m:          Metrics{InFlight: 12, NoData: true},
			want:       2,
			wantReason: "scale from zero: 12 requests waiting",
		},
		{
			name:       "scale from zero for one request",
			spec:       testSpec(),
			m:          Metrics{InFlight: 1},
			want:       1,
			wantReason: "scale from zero: 1 request waiting",
		},
		{
			name:       "scale from zero respects maxReplicas",
			spec:       with(func(s *serving.Scaling) { s.MaxReplicas = 3 }),
			m:          Metrics{InFlight: 1000},
			want:       3,
			wantReason: "capped at maxReplicas 3",
		},
		{
			// A burst still held: the first decision asked for one
			// replica; more requests arrived before it was ready.
			name:       "still cold, more requests held: sized for all of them",
			spec:       testSpec(),
			m:          Metrics{InFlight: 40, StableConcurrency: 0.5},
			st:         State{Desired: 1, LastChange: recent, LastActive: recent},
			want:       5, // 40 at target 8
			wantReason: "scale from zero: 40 requests waiting",
		},
		{
			name:       "still cold, never down",
			spec:       testSpec(),
			m:          Metrics{InFlight: 1, StableConcurrency: 0.5},
			st:         State{Desired: 3, LastChange: recent, LastActive: recent},
			want:       3,
			wantReason: "scale from zero: 1 request waiting",
		},
		{
			name:       "stays at zero without load",
			spec:       testSpec(),
			m:          Metrics{},
			want:       0,
			wantReason: "idle: no requests",
		},
		{
			name: "steady load",
			spec: testSpec(),
			m:    Metrics{StableConcurrency: 20, PanicConcurrency: 21, Ready: 3, LastActive: now},
			st:   State{Desired: 3, LastActive: recent},
			want: 3,
		},
		{
			name: "exact multiple of target does not round up",
			spec: testSpec(),
			m:    Metrics{StableConcurrency: 24, PanicConcurrency: 24, Ready: 3, LastActive: now},
			st:   State{Desired: 3},
			want: 3,
		},
		{
			name:       "no data keeps current count",
			spec:       testSpec(),
			m:          Metrics{NoData: true, Ready: 5},
			st:         State{Desired: 5, LastActive: now.Add(-time.Hour)},
			want:       5,
			wantReason: "no metrics yet",
		},
		{
			name:       "no data still scales up for requests in flight",
			spec:       testSpec(),
			m:          Metrics{NoData: true, InFlight: 40, Ready: 2},
			st:         State{Desired: 2},
			want:       5,
			wantReason: "no metrics yet: holding 5",
		},
		{
			name:       "in-flight requests hold replicas up",
			spec:       testSpec(),
			m:          Metrics{StableConcurrency: 4, PanicConcurrency: 4, InFlight: 30, Ready: 6, LastActive: now},
			st:         State{Desired: 6},
			want:       4,
			wantReason: "30 requests in flight: holding 4",
		},
		{
			name:       "in-flight requests do not push desired up",
			spec:       testSpec(),
			m:          Metrics{StableConcurrency: 4, PanicConcurrency: 4, InFlight: 30, Ready: 2, LastActive: now},
			st:         State{Desired: 2},
			want:       2,
			wantReason: "30 requests in flight: holding 2",
		},
		{
			name:       "scale-down keeps 10% headroom",
			spec:       testSpec(),
			m:          Metrics{StableConcurrency: 16, PanicConcurrency: 16, Ready: 3, LastActive: now},
			st:         State{Desired: 3},
			want:       3,
			wantReason: "concurrency 16.0",
		},
		{
			name: "scale-down below the headroom",
			spec: testSpec(),
			m:    Metrics{StableConcurrency: 14.4, PanicConcurrency: 14.4, Ready: 3, LastActive: now},
			st:   State{Desired: 3},
			want: 2,
		},
		{
			name: "scale-up has no headroom",
			spec: with(func(s *serving.Scaling) { s.PanicThreshold = 1000 }),
			m:    Metrics{StableConcurrency: 16, PanicConcurrency: 16, Ready: 1, LastActive: now},
			st:   State{Desired: 1},
			want: 2,
		},
		{
			name:       "scale down at most half",
			spec:       testSpec(),
			m:          Metrics{Ready: 16, LastActive: recent},
			st:         State{Desired: 16},
			want:       8,
			wantReason: "scale down limited to half: 8, wants 1",
		},
		{
			name:       "scale down of an odd count rounds up",
			spec:       testSpec(),
			m:          Metrics{Ready: 3, LastActive: recent},
			st:         State{Desired: 3},
			want:       2,
			wantReason: "limited to half",
		},
		{
			name:       "scale up at most 1000x ready",
			spec:       with(func(s *serving.Scaling) { s.MaxReplicas = 100000; s.PanicThreshold = 1e9 }),
			m:          Metrics{StableConcurrency: 8 * 5000, PanicConcurrency: 8 * 5000, Ready: 2, LastActive: now},
			st:         State{Desired: 2},
			want:       2000,
			wantReason: "scale up limited to 1000x ready",
		},
		{
			name:       "keeps one while recently active",
			spec:       testSpec(),
			m:          Metrics{Ready: 1, LastActive: recent},
			st:         State{Desired: 1},
			want:       1,
			wantReason: "keeping 1: last active 5s ago",
		},
		{
			name:       "scales to zero after ScaleToZeroAfter",
			spec:       testSpec(),
			m:          Metrics{Ready: 1, LastActive: now.Add(-60 * time.Second)},
			st:         State{Desired: 1, LastActive: now.Add(-60 * time.Second)},
			want:       0,
			wantReason: "idle for 1m0s: scale to zero",
		},
		{
			name: "scale to zero is not rate limited",
			spec: testSpec(),
			m:    Metrics{Ready: 8, LastActive: now.Add(-2 * time.Minute)},
			st:   State{Desired: 8},
			want: 0,
		},
		{
			name: "not idle while a request is in flight",
			spec: testSpec(),
			m:    Metrics{InFlight: 1, Ready: 1, LastActive: now.Add(-time.Hour)},
			st:   State{Desired: 1, LastActive: now.Add(-time.Hour)},
			want: 1,
		},
		{
			name:       "minReplicas never scales to zero",
			spec:       with(func(s *serving.Scaling) { s.MinReplicas = 2 }),
			m:          Metrics{Ready: 2, LastActive: now.Add(-time.Hour)},
			st:         State{Desired: 2, LastActive: now.Add(-time.Hour)},
			want:       2,
			wantReason: "minReplicas 2",
		},
		{
			name:       "minReplicas applies from a zero state",
			spec:       with(func(s *serving.Scaling) { s.MinReplicas = 3 }),
			m:          Metrics{},
			want:       3,
			wantReason: "minReplicas 3",
		},
		{
			name:       "panic at 200% of capacity",
			spec:       testSpec(),
			m:          Metrics{StableConcurrency: 8, PanicConcurrency: 32, Ready: 2, LastActive: now},
			st:         State{Desired: 2},
			want:       4,
			wantPanic:  true,
			wantReason: "panic: demand 2.0x capacity",
		},
		{
			name:       "just under the panic threshold",
			spec:       testSpec(),
			m:          Metrics{StableConcurrency: 6, PanicConcurrency: 31.9, Ready: 2, LastActive: now},
			st:         State{Desired: 2},
			want:       1,
			wantReason: "concurrency 6.0",
		},
		{
			name:      "no panic without ready replicas",
			spec:      testSpec(),
			m:         Metrics{StableConcurrency: 8, PanicConcurrency: 80, Ready: 0, LastActive: now},
			st:        State{Desired: 1},
			want:      1,
			wantPanic: false,
		},
		{
			name:       "panic never scales down",
			spec:       testSpec(),
			m:          Metrics{StableConcurrency: 8, PanicConcurrency: 8, Ready: 6, LastActive: now},
			st:         State{Desired: 6, PanicSince: now.Add(-30 * time.Second), PanicTriggered: now.Add(-30 * time.Second)},
			want:       6,
			wantPanic:  true,
			wantReason: "panic: demand 0.2x capacity",
		},
		{
			name: "panic ends a stable window after the last trigger",
			spec: testSpec(),
			m:    Metrics{StableConcurrency: 8, PanicConcurrency: 8, Ready: 6, LastActive: now},
			st:   State{Desired: 6, PanicSince: now.Add(-90 * time.Second), PanicTriggered: now.Add(-60 * time.Second)},
			want: 3,
		},
		{
			name:      "idle ends panic",
			spec:      with(func(s *serving.Scaling) { s.ScaleToZeroAfter = serving.D(10 * time.Second) }),
			m:         Metrics{StableConcurrency: 2, PanicConcurrency: 0, Ready: 6, LastActive: now.Add(-10 * time.Second)},
			st:        State{Desired: 6, PanicSince: now.Add(-20 * time.Second), PanicTriggered: now.Add(-15 * time.Second)},
			want:      0,
			wantPanic: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(now, tt.spec, tt.m, tt.st)
			if d.Desired != tt.want || d.Panic != tt.wantPanic {
				t.Errorf("Decide = %d (panic %v, %q), want %d (panic %v)", d.Desired, d.Panic, d.Reason, tt.want, tt.wantPanic)
			}
			if d.State.Desired != d.Desired {
				t.Errorf("State.Desired = %d, want %d", d.State.Desired, d.Desired)
			}
			if !strings.Contains(d.Reason, tt.wantReason) {
				t.Errorf("Reason = %q, want it to contain %q", d.Reason, tt.wantReason)
			}
			if changed := d.Desired != tt.st.Desired; changed != d.State.LastChange.Equal(now) {
				t.Errorf("State.LastChange = %v after %d -> %d", d.State.LastChange, tt.st.Desired, d.Desired)
			}
		})
	}
}

func TestDecideIsPure(t *testing.T) {
	spec := testSpec()
	m := Metrics{StableConcurrency: 20, PanicConcurrency: 50, InFlight: 3, Ready: 2, LastActive: sec(9)}
	st := State{Desired: 2, LastActive: sec(1)}
	a := Decide(sec(10), spec, m, st)
	b := Decide(sec(10), spec, m, st)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("two identical calls differ (-first +second):\n%s", diff)
	}
	want := State{Desired: 7, LastChange: sec(10), PanicSince: sec(10), PanicTriggered: sec(10), LastActive: sec(10)}
	if diff := cmp.Diff(want, a.State); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
}

func TestObserve(t *testing.T) {
	spec := with(func(s *serving.Scaling) {
		s.StableWindow = serving.D(10 * time.Second)
		s.PanicWindowPercent = 20 // 2s
	})
	if got, want := Observe(sec(0), nil, 1, 0, spec), (Metrics{InFlight: 1, NoData: true}); !cmp.Equal(got, want) {
		t.Errorf("Observe(nil) = %+v, want %+v", got, want)
	}
	w := stats.NewWindow(time.Minute)
	if got, want := Observe(sec(0), w, 3, 1, spec), (Metrics{InFlight: 3, Ready: 1, NoData: true}); !cmp.Equal(got, want) {
		t.Errorf("Observe(empty) = %+v, want %+v", got, want)
	}
	for i := 1; i <= 10; i++ {
		c := 1.0
		if i > 8 {
			c = 11
		}
		w.Add(stats.Sample{At: sec(float64(i)), Concurrency: c, Requests: 1})
	}
	got := Observe(sec(10), w, 4, 2, spec)
	want := Metrics{StableConcurrency: 3, PanicConcurrency: 11, InFlight: 4, Ready: 2, LastActive: sec(10)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Observe (-want +got):\n%s", diff)
	}
	// Panic window empty (a gap in samples): the stable figure stands in.
	got = Observe(sec(15), w, 0, 2, spec)
	want = Metrics{StableConcurrency: 5, PanicConcurrency: 5, Ready: 2, LastActive: sec(10)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Observe with empty panic window (-want +got):\n%s", diff)
	}
}
