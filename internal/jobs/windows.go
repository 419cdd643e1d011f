package jobs

import (
	"slices"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// span is a stretch of time, [start, end).
type span struct{ start, end time.Time }

// allowed returns the parts of [from, to) in which a job with windows ws
// may run, merged and in order: all of it when ws is empty.
func allowed(ws []serving.ScheduleWindow, from, to time.Time) []span {
	if !to.After(from) {
		return nil
	}
	if len(ws) == 0 {
		return []span{{from, to}}
	}
	var out []span
	for i, w := range ws {
		for _, o := range w.Occurrences(i, from, to) {
			s := span{o.Start, o.End}
			if s.start.Before(from) {
				s.start = from
			}
			if s.end.After(to) {
				s.end = to
			}
			if s.end.After(s.start) {
				out = append(out, s)
			}
		}
	}
	slices.SortFunc(out, func(a, b span) int { return a.start.Compare(b.start) })
	merged := out[:0]
	for _, s := range out {
		if n := len(merged); n > 0 && !s.start.After(merged[n-1].end) {
			if s.end.After(merged[n-1].end) {
				merged[n-1].end = s.end
			}
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// allowedDuration is the total length of allowed(ws, from, to).
func allowedDuration(ws []serving.ScheduleWindow, from, to time.Time) time.Duration {
	var d time.Duration
	for _, s := range allowed(ws, from, to) {
		d += s.end.Sub(s.start)
	}
	return d
}

// walk says when work of running time is done, starting at from and
// running only in the allowed times before horizon, where each allowed
// stretch the work enters first costs start (replicas starting cold). It
// returns the finish, the starts paid, and false when the work does not
// end before horizon.
func walk(ws []serving.ScheduleWindow, from, horizon time.Time, work, start time.Duration) (time.Time, int, bool) {
	starts := 0
	for _, s := range allowed(ws, from, horizon) {
		avail := s.end.Sub(s.start) - start
		if avail <= 0 {
			continue
		}
		starts++
		if work <= avail {
			return s.start.Add(start + work), starts, true
		}
		work -= avail
	}
	return time.Time{}, starts, false
}

// openAt reports whether a job with windows ws may run at now and, when
// it may not, when it next may (zero when not within a year).
func openAt(ws []serving.ScheduleWindow, now time.Time) (bool, time.Time) {
	if len(ws) == 0 {
		return true, time.Time{}
	}
	// A week and a day holds the next run of any weekly window; a year
	// is the fallback for a calendar with gaps (a time zone's switch).
	spans := allowed(ws, now, now.AddDate(0, 0, 8))
	if len(spans) == 0 {
		if spans = allowed(ws, now, now.AddDate(1, 0, 0)); len(spans) == 0 {
			return false, time.Time{}
		}
	}
	if !spans[0].start.After(now) {
		return true, time.Time{}
	}
	return false, spans[0].start
}
