package autoscale

import (
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// Bounds are a deployment's replica bounds at a moment, its schedule
// (serving.Scaling.Schedule) applied.
type Bounds struct {
	MinReplicas, MaxReplicas int32
	// Window names the schedule window that applies, "" for none.
	// Prewarming says it applies ahead of its start, by the lead.
	Window     string
	Prewarming bool
	// Next is when the bounds next change (a window starts, counting the
	// lead, or ends), and NextWindow the window that starts then ("" when
	// one ends into none); zero when the schedule is empty.
	Next       time.Time
	NextWindow string
}

// scheduleHorizon is how far ahead Scheduled looks for the next change:
// a weekly schedule changes within 8 days.
const scheduleHorizon = 8 * 24 * time.Hour

// Scheduled returns the bounds of sc at now. A window applies from lead
// before its start (the deployment's cold-start time, so that its floor's
// replicas are ready when it opens) to its end; where windows overlap, the
// first in the list wins. Outside every window sc's own bounds apply.
// It is pure: now and lead come from the caller.
func Scheduled(now time.Time, sc serving.Scaling, lead time.Duration) Bounds {
	b := Bounds{MinReplicas: sc.MinReplicas, MaxReplicas: sc.MaxReplicas}
	if len(sc.Schedule) == 0 {
		return b
	}
	lead = max(lead, 0)
	var runs []serving.Occurrence
	for i, w := range sc.Schedule {
		// Occurrences looks a day back for a run still on.
		runs = append(runs, w.Occurrences(i, now, now.Add(scheduleHorizon+lead))...)
	}
	// The window that applies now: the first in the list covering now.
	active := -1
	for i, r := range runs {
		if !now.Before(r.Start.Add(-lead)) && now.Before(r.End) && (active < 0 || r.Window < runs[active].Window) {
			active = i
		}
	}
	if active >= 0 {
		r := runs[active]
		w := sc.Schedule[r.Window]
		b.Window, b.Prewarming = w.ScheduleName(r.Window), now.Before(r.Start)
		if w.MinReplicas != nil {
			b.MinReplicas = *w.MinReplicas
		}
		if w.MaxReplicas != nil {
			b.MaxReplicas = *w.MaxReplicas
		}
		b.MinReplicas = min(b.MinReplicas, b.MaxReplicas)
	}
	// The next change: the earliest start (less the lead) or end after now.
	for _, r := range runs {
		w := sc.Schedule[r.Window]
		if s := r.Start.Add(-lead); s.After(now) && (b.Next.IsZero() || s.Before(b.Next)) {
			b.Next, b.NextWindow = s, w.ScheduleName(r.Window)
		}
		if r.End.After(now) && (b.Next.IsZero() || r.End.Before(b.Next)) {
			b.Next, b.NextWindow = r.End, ""
		}
	}
	return b
}

// Status is b as a deployment's status shows it.
func (b Bounds) Status() serving.ScheduleStatus {
	st := serving.ScheduleStatus{Window: b.Window, Prewarming: b.Prewarming, MinReplicas: b.MinReplicas, MaxReplicas: b.MaxReplicas, NextWindow: b.NextWindow}
	if !b.Next.IsZero() {
		next := b.Next
		st.Next = &next
	}
	return st
}
