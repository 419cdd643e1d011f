package autoscale

import (
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

func pinned(n int32) *serving.Spec {
	s := serving.Spec{Model: "m.json", Replicas: &n}
	s.Default()
	return &s
}

// TestScalePinned checks that a pin decides exactly N whatever the demand,
// the range and the previous state.
func TestScalePinned(t *testing.T) {
	now := sec(1000)
	tests := []struct {
		name       string
		spec       *serving.Spec
		m          Metrics
		st         State
		want       int32
		wantReason string
	}{
		{
			name:       "pinned at zero ignores waiting requests",
			spec:       pinned(0),
			m:          Metrics{InFlight: 50, StableConcurrency: 40, PanicConcurrency: 90, LastActive: now},
			want:       0,
			wantReason: "scaled to zero by its owner",
		},
		{
			name:       "pinned at zero stops running replicas at once",
			spec:       pinned(0),
			m:          Metrics{Ready: 8, StableConcurrency: 60, PanicConcurrency: 60, LastActive: now},
			st:         State{Desired: 8, LastActive: now},
			want:       0,
			wantReason: "scaled to zero by its owner",
		},
		{
			name:       "pinned at two with heavy load",
			spec:       pinned(2),
			m:          Metrics{InFlight: 500, StableConcurrency: 400, PanicConcurrency: 600, Ready: 2, LastActive: now},
			st:         State{Desired: 2, PanicSince: now.Add(-time.Second), PanicTriggered: now},
			want:       2,
			wantReason: "pinned at 2",
		},
		{
			name:       "pinned at three while idle past scale-to-zero",
			spec:       pinned(3),
			m:          Metrics{Ready: 3},
			st:         State{Desired: 3, LastActive: now.Add(-time.Hour)},
			want:       3,
			wantReason: "pinned at 3",
		},
		{
			name:       "pin above maxReplicas wins",
			spec:       func() *serving.Spec { s := pinned(10); s.Scaling.MaxReplicas = 4; return s }(),
			m:          Metrics{NoData: true},
			want:       10,
			wantReason: "pinned at 10",
		},
		{
			name:       "pin below minReplicas wins",
			spec:       func() *serving.Spec { s := pinned(1); s.Scaling.MinReplicas, s.Scaling.MaxReplicas = 3, 5; return s }(),
			m:          Metrics{Ready: 3},
			st:         State{Desired: 3},
			want:       1,
			wantReason: "pinned at 1",
		},
		{
			name:       "no pin autoscales",
			spec:       func() *serving.Spec { s := pinned(0); s.Replicas = nil; return s }(),
			m:          Metrics{InFlight: 1},
			want:       1,
			wantReason: "scale from zero",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Scale(now, tt.spec, tt.m, tt.st)
			if d.Desired != tt.want || d.State.Desired != tt.want {
				t.Errorf("Desired = %d (state %d), want %d (reason %q)", d.Desired, d.State.Desired, tt.want, d.Reason)
			}
			if !strings.Contains(d.Reason, tt.wantReason) {
				t.Errorf("Reason = %q, want it to contain %q", d.Reason, tt.wantReason)
			}
			if tt.spec.Replicas != nil && (d.Panic || d.State.Panicking()) {
				t.Errorf("a pinned decision panics: %+v", d)
			}
		})
	}
}

// TestUnpinResumesAutoscaling checks that removing a pin hands the count
// back to Decide from where the pin left it: from a pin at 3 with load, the
// autoscaler keeps what the load needs; from a pin at zero with requests
// waiting, it scales from zero at once.
func TestUnpinResumesAutoscaling(t *testing.T) {
	now := sec(1000)
	spec := pinned(3)
	m := Metrics{StableConcurrency: 12, PanicConcurrency: 12, Ready: 3, LastActive: now}
	st := Scale(now, spec, m, State{}).State
	if st.Desired != 3 || st.LastActive != now {
		t.Fatalf("pinned state = %+v; want desired 3, last active now", st)
	}
	spec.Replicas = nil
	d := Scale(now.Add(time.Second), spec, m, st)
	if d.Desired != 2 {
		t.Errorf("after unpin Desired = %d (%s); want 2 for concurrency 12 at target 8", d.Desired, d.Reason)
	}

	zero := pinned(0)
	waiting := Metrics{InFlight: 3, NoData: true}
	st = Scale(now, zero, waiting, State{}).State
	if st.Desired != 0 {
		t.Fatalf("pinned at zero desired %d", st.Desired)
	}
	zero.Replicas = nil
	if d := Scale(now.Add(time.Second), zero, waiting, st); d.Desired != 1 {
		t.Errorf("after unpin with 3 waiting Desired = %d (%s); want 1", d.Desired, d.Reason)
	}
}
