package autoscale

import (
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
)

func i32(n int32) *int32 { return &n }

// businessHours is min 2 (max 6) from 07:00 to 17:00 on weekdays in Paris,
// and a deployment of min 0, max 4 otherwise.
func businessHours() serving.Scaling {
	s := testSpec()
	s.MinReplicas, s.MaxReplicas = 0, 4
	s.Schedule = []serving.ScheduleWindow{{Name: "business-hours", Days: []string{"Mon-Fri"}, Start: "07:00", End: "17:00",
		TimeZone: "Europe/Paris", MinReplicas: i32(2), MaxReplicas: i32(6)}}
	return s
}

func paris(t *testing.T, s string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	v, err := time.ParseInLocation("2006-01-02 15:04:05", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestScheduled: which window's bounds apply at a moment, the pre-warm
// lead, overnight windows, overlaps (the first wins) and the next change.
func TestScheduled(t *testing.T) {
	overnight := testSpec()
	overnight.MinReplicas, overnight.MaxReplicas = 1, 4
	overnight.Schedule = []serving.ScheduleWindow{{Name: "night", Start: "22:00", End: "06:00", MinReplicas: i32(0), MaxReplicas: i32(1)}}
	overlap := businessHours()
	overlap.Schedule = append([]serving.ScheduleWindow{{Name: "launch", Days: []string{"Wed"}, Start: "09:00", End: "10:00", TimeZone: "Europe/Paris", MinReplicas: i32(5)}}, overlap.Schedule...)

	// 2026-12-07 is a Monday.
	tests := []struct {
		name             string
		sc               serving.Scaling
		at               string // Paris time
		lead             time.Duration
		wantWindow       string
		wantPre          bool
		wantMin, wantMax int32
		wantNext         string // Paris time, "" for none
		wantNextWindow   string
	}{
		{name: "monday morning", sc: businessHours(), at: "2026-12-07 10:00:00", wantWindow: "business-hours", wantMin: 2, wantMax: 6,
			wantNext: "2026-12-07 17:00:00"},
		{name: "monday evening", sc: businessHours(), at: "2026-12-07 17:00:00", wantMin: 0, wantMax: 4,
			wantNext: "2026-12-08 07:00:00", wantNextWindow: "business-hours"},
		{name: "saturday", sc: businessHours(), at: "2026-12-12 10:00:00", wantMin: 0, wantMax: 4,
			wantNext: "2026-12-14 07:00:00", wantNextWindow: "business-hours"},
		{name: "pre-warm within the lead", sc: businessHours(), at: "2026-12-07 06:59:30", lead: time.Minute, wantWindow: "business-hours", wantPre: true, wantMin: 2, wantMax: 6,
			wantNext: "2026-12-07 17:00:00"},
		{name: "before the lead", sc: businessHours(), at: "2026-12-07 06:58:30", lead: time.Minute, wantMin: 0, wantMax: 4,
			wantNext: "2026-12-07 06:59:00", wantNextWindow: "business-hours"},
		{name: "overnight, after midnight (UTC)", sc: overnight, at: "2026-12-08 04:00:00", wantWindow: "night", wantMin: 0, wantMax: 1,
			wantNext: "2026-12-08 07:00:00"}, // 06:00 UTC
		{name: "overlap: the first window wins", sc: overlap, at: "2026-12-09 09:30:00", wantWindow: "launch", wantMin: 5, wantMax: 4 /* deployment's max: launch sets none; min capped below */},
		{name: "no schedule", sc: testSpec(), at: "2026-12-07 10:00:00", wantMin: testSpec().MinReplicas, wantMax: testSpec().MaxReplicas},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Scheduled(paris(t, tt.at), tt.sc, tt.lead)
			wantMin := min(tt.wantMin, tt.wantMax)
			if b.Window != tt.wantWindow || b.Prewarming != tt.wantPre || b.MinReplicas != wantMin || b.MaxReplicas != tt.wantMax {
				t.Fatalf("Scheduled = %+v; want window %q (pre-warming %v), %d..%d", b, tt.wantWindow, tt.wantPre, wantMin, tt.wantMax)
			}
			if tt.wantNext != "" && !b.Next.Equal(paris(t, tt.wantNext)) || b.NextWindow != tt.wantNextWindow && tt.wantNext != "" {
				t.Errorf("next change %v (%q); want %s (%q)", b.Next.In(paris(t, tt.at).Location()), b.NextWindow, tt.wantNext, tt.wantNextWindow)
			}
		})
	}
}

// TestScheduleSimulatedWeek drives the real decision code over a simulated
// week, a minute at a time, with a fake clock: business-hours traffic,
// then a burst that is still in flight when the window closes. It checks
// the floors (at least 2 replicas through every weekday window), the
// pre-warm (2 replicas wanted a lead ahead of 07:00), zero replicas at
// night and on the weekend, and that a window's end never cuts below what
// the requests in flight need.
func TestScheduleSimulatedWeek(t *testing.T) {
	sc := businessHours()
	const lead = 2 * time.Minute
	start := paris(t, "2026-12-07 00:00:00") // Monday
	w := stats.NewWindow(sc.StableWindow.Duration)
	var st State
	for m := 0; m < 7*24*60; m++ {
		now := start.Add(time.Duration(m) * time.Minute)
		local := now.In(start.Location())
		weekday := local.Weekday() >= time.Monday && local.Weekday() <= time.Friday
		hm := local.Hour()*60 + local.Minute()
		inWindow := weekday && hm >= 7*60 && hm < 17*60
		prewarm := weekday && hm >= 7*60-int(lead/time.Minute) && hm < 7*60
		// Load: 12 in flight at 10:00-11:00 on weekdays (above the
		// floor); 40 in flight from 16:50 to 17:10 on Tuesday (still
		// in flight when the window closes); none otherwise.
		inFlight := 0
		switch {
		case weekday && hm >= 10*60 && hm < 11*60:
			inFlight = 12
		case local.Weekday() == time.Tuesday && hm >= 16*60+50 && hm < 17*60+10:
			inFlight = 40
		}
		w.Add(stats.Sample{At: now, Concurrency: float64(inFlight), Requests: min(inFlight, 1)})
		spec := sc
		b := Scheduled(now, sc, lead)
		spec.MinReplicas, spec.MaxReplicas = b.MinReplicas, b.MaxReplicas
		d := Decide(now, spec, Observe(now, w, inFlight, int(st.Desired), spec), st)
		st = d.State
		need := int32(0)
		if inFlight > 0 {
			need = min(ceilDiv(float64(inFlight), spec.TargetConcurrency), spec.MaxReplicas)
		}
		switch {
		case (inWindow || prewarm) && d.Desired < 2:
			t.Fatalf("%s: %d replicas wanted in the window (pre-warm %v); want at least its floor 2 (%s)", local.Format("Mon 15:04"), d.Desired, prewarm, d.Reason)
		case d.Desired < need:
			t.Fatalf("%s: %d replicas wanted with %d requests in flight; they need %d (%s)", local.Format("Mon 15:04"), d.Desired, inFlight, need, d.Reason)
		case !inWindow && !prewarm && inFlight == 0 && (hm >= 18*60 || hm < 6*60 || !weekday) && d.Desired != 0:
			// An hour after the window, idle: back at zero.
			t.Fatalf("%s: %d replicas wanted outside the window with no load; want 0 (%s)", local.Format("Mon 15:04"), d.Desired, d.Reason)
		}
	}
}
