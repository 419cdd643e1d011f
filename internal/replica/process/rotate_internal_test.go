package process

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestPlanLogs(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	live := func(id string) bool { return id == "a-aaaaaa" || id == "b-bbbbbb" }
	for _, tc := range []struct {
		name  string
		files []logFile
		max   int64
		keep  time.Duration
		want  logPlan
	}{
		{"small live log stays", []logFile{{id: "a-aaaaaa", size: 99, modTime: now}}, 100, time.Hour, logPlan{}},
		{"live log at the cap rotates", []logFile{{id: "a-aaaaaa", size: 100, modTime: now}}, 100, time.Hour,
			logPlan{rotate: []string{"a-aaaaaa"}}},
		{"rotations do not count toward the cap", []logFile{
			{id: "a-aaaaaa", size: 10, modTime: now}, {id: "a-aaaaaa", n: 1, size: 100, modTime: ago(time.Minute)}}, 100, time.Hour, logPlan{}},
		{"no cap", []logFile{{id: "a-aaaaaa", size: 1 << 40, modTime: now}}, 0, time.Hour, logPlan{}},
		{"a live replica's old log is kept", []logFile{{id: "b-bbbbbb", size: 1, modTime: ago(48 * time.Hour)}}, 100, time.Hour, logPlan{}},
		{"a gone replica's log within retention is kept", []logFile{{id: "c-cccccc", size: 1, modTime: ago(59 * time.Minute)}}, 100, time.Hour, logPlan{}},
		{"a gone replica's log past retention goes", []logFile{
			{id: "c-cccccc", size: 1, modTime: ago(2 * time.Hour)}, {id: "c-cccccc", n: 2, modTime: ago(3 * time.Hour)}}, 100, time.Hour,
			logPlan{prune: []string{"c-cccccc"}}},
		{"the newest file decides", []logFile{
			{id: "c-cccccc", size: 1, modTime: ago(2 * time.Hour)}, {id: "c-cccccc", n: 1, modTime: ago(time.Minute)}}, 100, time.Hour, logPlan{}},
		{"a gone replica's big log is not rotated", []logFile{{id: "c-cccccc", size: 500, modTime: now}}, 100, time.Hour, logPlan{}},
		{"no retention", []logFile{{id: "c-cccccc", size: 1, modTime: ago(1000 * time.Hour)}}, 100, 0, logPlan{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := planLogs(tc.files, live, now, tc.max, tc.keep)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(logPlan{}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("planLogs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLogName(t *testing.T) {
	for name, want := range map[string]string{
		"diabetes-x1y2z3.log":   "diabetes-x1y2z3",
		"diabetes-x1y2z3.log.2": "diabetes-x1y2z3",
		"my-dep-abcdef.log":     "my-dep-abcdef",
		"diabetes-x1y2z3.log.0": "",
		"other.log":             "",
		"Diabetes-X1Y2Z3.log":   "",
		"ebb-up-123.log":        "",
		"diabetes-x1y2z3.txt":   "",
	} {
		got := ""
		if m := logName.FindStringSubmatch(name); m != nil {
			got = m[1]
		}
		if got != want {
			t.Errorf("%s: id %q; want %q", name, got, want)
		}
	}
}
