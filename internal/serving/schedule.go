package serving

import (
	"fmt"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // schedules name IANA time zones; a host may lack tzdata
)

// ScheduleWindow is a recurring time window with replica bounds of its own
// (Scaling.Schedule): for example at least 2 replicas from 07:00 to 17:00
// on weekdays in Europe/Paris. Inside a window its minReplicas and
// maxReplicas replace the deployment's; outside every window the
// deployment's apply. A window sets a floor and a ceiling; demand still
// decides above the floor, so a window's end never removes replicas that
// requests in flight need (they go as demand falls, as always).
type ScheduleWindow struct {
	// Name says what the window is for ("business-hours"); shown in the
	// status. Default "window-N" (its position, from 1).
	// +optional
	Name string `json:"name,omitempty"`
	// Days the window starts on: Mon, Tue, Wed, Thu, Fri, Sat, Sun, or
	// ranges such as Mon-Fri. Empty: every day.
	// +optional
	Days []string `json:"days,omitempty"`
	// Start and End are wall-clock times, HH:MM, in TimeZone. An End at or
	// before Start ends the next day (22:00 to 06:00 runs overnight).
	Start string `json:"start"`
	End   string `json:"end"`
	// TimeZone is an IANA zone, such as Europe/Paris; default UTC.
	// +optional
	TimeZone string `json:"timeZone,omitempty"`
	// MinReplicas and MaxReplicas bound the replicas inside the window;
	// unset, the deployment's own apply.
	// +optional
	MinReplicas *int32 `json:"minReplicas,omitempty"`
	// +optional
	MaxReplicas *int32 `json:"maxReplicas,omitempty"`
}

// MaxScheduleWindows bounds Scaling.Schedule.
const MaxScheduleWindows = 32

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// ScheduleName is w's name, or window-N for the i-th window (from 0).
func (w ScheduleWindow) ScheduleName(i int) string {
	if w.Name != "" {
		return w.Name
	}
	return fmt.Sprintf("window-%d", i+1)
}

// parseClock reads HH:MM as minutes after midnight.
func parseClock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a time of day: give HH:MM, such as 07:00", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// parseDays reads Days as a set of weekdays; nil (every day) when empty.
func parseDays(days []string) ([7]bool, error) {
	var set [7]bool
	if len(days) == 0 {
		for i := range set {
			set[i] = true
		}
		return set, nil
	}
	for _, d := range days {
		from, to, isRange := strings.Cut(strings.ToLower(strings.TrimSpace(d)), "-")
		a, ok := weekdays[strings.TrimSpace(from)]
		if !ok {
			return set, fmt.Errorf("%q is not a day: give Mon, Tue, Wed, Thu, Fri, Sat, Sun or a range such as Mon-Fri", d)
		}
		b := a
		if isRange {
			if b, ok = weekdays[strings.TrimSpace(to)]; !ok {
				return set, fmt.Errorf("%q is not a day range: give one such as Mon-Fri", d)
			}
		}
		for day := a; ; day = (day + 1) % 7 {
			set[day] = true
			if day == b {
				break
			}
		}
	}
	return set, nil
}

// Occurrence is one run of a window: from Start to End.
//
// +kubebuilder:object:generate=false
type Occurrence struct {
	Window     int // index in Scaling.Schedule
	Start, End time.Time
}

// Occurrences returns the runs of w (the i-th window) that overlap [from,
// to), in order. w must be valid (validateSchedule).
func (w ScheduleWindow) Occurrences(i int, from, to time.Time) []Occurrence {
	loc, err := location(w.TimeZone)
	if err != nil {
		return nil
	}
	start, err1 := parseClock(w.Start)
	end, err2 := parseClock(w.End)
	days, err3 := parseDays(w.Days)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil
	}
	var out []Occurrence
	// From the day before from (an overnight run may still be on) to to.
	f := from.In(loc)
	day := time.Date(f.Year(), f.Month(), f.Day()-1, 0, 0, 0, 0, loc)
	for ; !day.After(to); day = time.Date(day.Year(), day.Month(), day.Day()+1, 0, 0, 0, 0, loc) {
		if !days[day.Weekday()] {
			continue
		}
		s := time.Date(day.Year(), day.Month(), day.Day(), start/60, start%60, 0, 0, loc)
		e := time.Date(day.Year(), day.Month(), day.Day(), end/60, end%60, 0, 0, loc)
		if !e.After(s) {
			e = time.Date(day.Year(), day.Month(), day.Day()+1, end/60, end%60, 0, 0, loc)
		}
		if e.After(from) && s.Before(to) {
			out = append(out, Occurrence{Window: i, Start: s, End: e})
		}
	}
	return out
}

// locations caches time.LoadLocation, which reads the zone's data each
// time: a schedule is evaluated at every decision.
var locations sync.Map // string → *time.Location

// location is time.LoadLocation, cached; "" is UTC.
func location(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if l, ok := locations.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	locations.Store(name, l)
	return l, nil
}

// validateSchedule checks spec.scaling.schedule.
func (s *Spec) validateSchedule() []*FieldError {
	var errs []*FieldError
	sched := s.Scaling.Schedule
	if len(sched) > MaxScheduleWindows {
		errs = append(errs, &FieldError{"spec.scaling.schedule", fmt.Sprintf("has %d windows; at most %d are allowed", len(sched), MaxScheduleWindows)})
	}
	names := map[string]bool{}
	for i, w := range sched {
		field := fmt.Sprintf("spec.scaling.schedule[%d]", i)
		add := func(sub, format string, args ...any) {
			errs = append(errs, &FieldError{field + sub, fmt.Sprintf(format, args...)})
		}
		if n := w.ScheduleName(i); names[n] {
			add(".name", "%q is used twice: give each window its own name", n)
		} else {
			names[n] = true
		}
		if _, err := parseClock(w.Start); err != nil {
			add(".start", "%v", err)
		}
		if _, err := parseClock(w.End); err != nil {
			add(".end", "%v", err)
		} else if w.Start == w.End {
			add(".end", "equals start: a window needs a length (for all day, give 00:00 to 23:59)")
		}
		if _, err := parseDays(w.Days); err != nil {
			add(".days", "%v", err)
		}
		if w.TimeZone != "" {
			if _, err := location(w.TimeZone); err != nil {
				add(".timeZone", "%q is not an IANA time zone: give one such as Europe/Paris or America/New_York", w.TimeZone)
			}
		}
		minR, maxR := s.Scaling.MinReplicas, s.Scaling.MaxReplicas
		if w.MinReplicas != nil {
			minR = *w.MinReplicas
			if minR < 0 || minR > MaxReplicasLimit {
				add(".minReplicas", "must be between 0 and %d, got %d", MaxReplicasLimit, minR)
			}
		}
		if w.MaxReplicas != nil {
			maxR = *w.MaxReplicas
			if maxR < 1 || maxR > MaxReplicasLimit {
				add(".maxReplicas", "must be between 1 and %d, got %d", MaxReplicasLimit, maxR)
			}
		}
		if w.MinReplicas == nil && w.MaxReplicas == nil {
			add("", "sets neither minReplicas nor maxReplicas: give at least one")
		} else if minR > maxR {
			add(".minReplicas", "%d is above the window's maxReplicas %d", minR, maxR)
		}
	}
	return errs
}

// ScheduleStatus is where a deployment's schedule stands (Status.Schedule).
// Status's DeepCopyInto copies it (deepcopy.go).
//
// +kubebuilder:object:generate=false
type ScheduleStatus struct {
	// Window is the window whose bounds apply, "" for none (the
	// deployment's own); Prewarming says it applies ahead of its start,
	// by the deployment's cold-start time.
	// +optional
	Window string `json:"window,omitempty"`
	// +optional
	Prewarming  bool  `json:"prewarming,omitempty"`
	MinReplicas int32 `json:"minReplicas"`
	MaxReplicas int32 `json:"maxReplicas"`
	// Next is when the bounds next change, and NextWindow the window that
	// starts then ("" when one ends).
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +optional
	Next *time.Time `json:"next,omitempty"`
	// +optional
	NextWindow string `json:"nextWindow,omitempty"`
}

// Applies says which window's bounds apply, in words ("window
// business-hours: 2..6 replicas", "pre-warming for ..."); "" when none
// does.
func (s ScheduleStatus) Applies() string {
	if s.Window == "" {
		return ""
	}
	out := fmt.Sprintf("window %s: %d..%d replicas", s.Window, s.MinReplicas, s.MaxReplicas)
	if s.Prewarming {
		out = "pre-warming for " + out
	}
	return out
}
