package main

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// newJobsServer serves the admin API with jobs mounted (no admission, no
// runner) and returns its URL and store.
func newJobsServer(t *testing.T) (string, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := api.New(st, &cliController{statuses: map[string]serving.Status{}}, nil)
	h.MountJobs(st, nil, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Setenv(serverEnv, "")
	return srv.URL, st
}

const jobYAML = `name: weekly
spec:
  input:
    uri: file:///data/week.csv
    idColumn: id
    columns:
    - tensor: input-0
      columns: [age, sex, bmi]
  serving:
    model: examples/diabetes/model.json
  output:
    uri: file:///data/scores.parquet
  deadline: 2099-03-02T06:00:00Z
  lease:
    maxReplicas: 4
    maxReplicaHours: 2.5
    windows:
    - days: [Sat-Sun]
      start: "00:00"
      end: "23:59"
      timeZone: Europe/Paris
`

func TestJobsCLI(t *testing.T) {
	url, st := newJobsServer(t)
	run := func(args ...string) (string, error) { return runEbb(t, "", append(args, "--server", url)...) }
	tests := []struct {
		name    string
		args    []string
		wantErr string
		want    []string
	}{
		{"empty list", []string{"jobs", "list"}, "", []string{"No jobs"}},
		{"no file", []string{"jobs", "submit"}, "give the job file with -f", nil},
		{"no spec", []string{"jobs", "submit", "-f", writeFile(t, "j.yaml", "name: x\n")}, "spec is required", nil},
		{"two jobs", []string{"jobs", "submit", "-f", writeFile(t, "j.yaml", jobYAML+"---\n"+jobYAML)}, "more than one document", nil},
		{"invalid", []string{"jobs", "submit", "-f", writeFile(t, "j.yaml", strings.Replace(jobYAML, "maxReplicas: 4", "maxReplicas: 0", 1))},
			"spec.lease.maxReplicas", nil},
		{"submit", []string{"jobs", "submit", "-f", writeFile(t, "j.yaml", jobYAML)}, "", []string{"job/weekly submitted", "ebb jobs get weekly --watch"}},
		{"list", []string{"jobs", "list"}, "", []string{"NAME", "PHASE", "REPLICA-H", "weekly", "Pending", "0/0", "0.00/2.50"}},
		{"get", []string{"jobs", "get", "weekly"}, "", []string{"Phase:          Pending", "its own: examples/diabetes/model.json",
			"file:///data/week.csv (csv", "file:///data/scores.parquet (parquet)", "Replica-hours:  0.00 of 2.50", "Window:         Sat-Sun 00:00-23:59 Europe/Paris"}},
		{"json", []string{"jobs", "get", "weekly", "-o", "json"}, "", []string{`"name": "weekly"`, `"maxReplicaHours": 2.5`}},
		{"watch with -o", []string{"jobs", "get", "weekly", "--watch", "-o", "json"}, "leave out -o", nil},
		{"logs", []string{"jobs", "logs", "weekly"}, "", []string{"submitted"}},
		{"delete pending", []string{"jobs", "delete", "weekly"}, "cancel it first", nil},
		{"cancel", []string{"jobs", "cancel", "weekly"}, "", []string{"job/weekly cancelled"}},
		{"watch a finished job", []string{"jobs", "get", "weekly", "--watch", "--interval", "10ms"}, "job weekly cancelled",
			[]string{"weekly Cancelled [--------------------]", "job/weekly Cancelled: cancelled before it started"}},
		{"delete", []string{"jobs", "delete", "weekly"}, "", []string{"job/weekly deleted"}},
		{"get missing", []string{"jobs", "get", "weekly"}, `job "weekly" not found`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(tt.args...)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("ebb %s: %v\n%s", strings.Join(tt.args, " "), err, out)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("ebb %s = %v; want an error with %q", strings.Join(tt.args, " "), err, tt.wantErr)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("ebb %s printed:\n%s\nwant %q in it", strings.Join(tt.args, " "), out, w)
				}
			}
		})
	}
	if _, err := st.GetJob(context.Background(), "weekly"); err == nil {
		t.Error("the job is still stored after delete")
	}
}

func TestJobDetailGPUHours(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.Local)
	tests := []struct {
		name  string
		lease serving.Lease
		used  float64
		want  string // empty: no GPU-hours line
	}{
		{"no GPUs", serving.Lease{MaxReplicas: 4, MaxReplicaHours: 10}, 0, ""},
		{"GPU lease", serving.Lease{MaxReplicas: 4, MaxReplicaHours: 10, MaxGPUHours: 20}, 2.4, "GPU-hours:      2.40 of 20.00\n"},
		{"GPUs, no GPU bound", serving.Lease{MaxReplicas: 4, MaxReplicaHours: 10}, 2.4, "GPU-hours:      2.40 of no bound\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := serving.Job{Name: "weekly", Spec: serving.JobSpec{Deployment: "d", Deadline: now.Add(4 * time.Hour), Lease: tt.lease},
				Status: serving.JobStatus{Phase: serving.JobRunning, ReplicaHours: 1.2, GPUHours: tt.used}}
			var b strings.Builder
			if err := writeJobDetail(&b, j, now); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); tt.want == "" && strings.Contains(got, "GPU-hours") || !strings.Contains(got, tt.want) {
				t.Errorf("detail =\n%s\nwant %q", got, tt.want)
			}
		})
	}
}

func TestProgressLine(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.Local)
	eta := now.Add(90 * time.Minute)
	j := serving.Job{Name: "weekly", Spec: serving.JobSpec{Deadline: now.Add(4 * time.Hour), Lease: serving.Lease{MaxReplicas: 4, MaxReplicaHours: 10}},
		Status: serving.JobStatus{Phase: serving.JobRunning, RowsDone: 45000, RowsTotal: 100000, RowsPerSecond: 812.5, ETA: &eta,
			Replicas: 4, ReplicaHours: 1.2, Warnings: []string{"deadline at risk"}}}
	got := progressLine(j, now)
	want := "weekly Running [#########-----------]  45% 45000/100000 rows  812.5 rows/s  ETA 13:30:00 (deadline Mon Mar 2 16:00, 2h30m0s to spare)  replicas 4  1.20/10.00 replica-h  warning: deadline at risk"
	if got != want {
		t.Errorf("progressLine =\n%q\nwant\n%q", got, want)
	}
	late := now.Add(5 * time.Hour)
	j.Status.ETA = &late
	if got := progressLine(j, now); !strings.Contains(got, "1h0m0s late") {
		t.Errorf("progressLine with a late ETA = %q; want it to say 1h0m0s late", got)
	}
}
