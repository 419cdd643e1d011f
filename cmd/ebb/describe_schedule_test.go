package main

import (
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// TestScheduleText: describe shows the window that applies, its bounds and
// the next transition.
func TestScheduleText(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	next := now.Add(7 * time.Hour)
	windows := []serving.ScheduleWindow{{Name: "business-hours", Start: "07:00", End: "17:00"}}
	tests := []struct {
		name    string
		windows []serving.ScheduleWindow
		st      *serving.ScheduleStatus
		want    string
	}{
		{name: "no schedule", want: ""},
		{name: "not evaluated", windows: windows, want: "1 window(s), not evaluated yet"},
		{name: "in a window", windows: windows, st: &serving.ScheduleStatus{Window: "business-hours", MinReplicas: 2, MaxReplicas: 6, Next: &next},
			want: "window business-hours: 2..6 replicas; next: window ends at 2026-12-07T16:00:00Z (in 7h0m0s)"},
		{name: "pre-warming", windows: windows, st: &serving.ScheduleStatus{Window: "business-hours", Prewarming: true, MinReplicas: 2, MaxReplicas: 6},
			want: "pre-warming for window business-hours: 2..6 replicas"},
		{name: "between windows", windows: windows, st: &serving.ScheduleStatus{MinReplicas: 0, MaxReplicas: 4, Next: &next, NextWindow: "business-hours"},
			want: "no window: 0..4 replicas; next: business-hours starts (less the cold-start lead) at 2026-12-07T16:00:00Z (in 7h0m0s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scheduleText(tt.windows, tt.st, now); got != tt.want {
				t.Errorf("scheduleText = %q; want %q", got, tt.want)
			}
		})
	}
}
