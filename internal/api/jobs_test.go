package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// fakeAdmitter admits a job whose input is not "missing", with 1000 rows;
// one that expects under 1 row/s is refused.
type fakeAdmitter struct{}

func (fakeAdmitter) Admit(_ context.Context, j *serving.Job) error {
	if strings.Contains(j.Spec.Input.URI, "missing") {
		return errors.New("input file:///data/missing.csv cannot be read: no such file")
	}
	if r := j.Spec.RowsPerSecond; r > 0 && r < 1 {
		return &serving.JobRefusal{Rows: 1000, RowsPerSecondPerReplica: r, Deadline: j.Spec.Deadline, AllowedHours: 1,
			NeededReplicas: 9, AllowedReplicas: j.Spec.Lease.MaxReplicas, NeededReplicaHours: 3, AllowedReplicaHours: j.Spec.Lease.MaxReplicaHours}
	}
	j.Status.RowsTotal = 1000
	return nil
}

func newJobsEnv(t *testing.T) (*env, *[]string) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	ctl := &fakeController{statuses: map[string]serving.Status{
		"iris": {Metadata: &oip.ModelMetadata{Name: "iris", Inputs: []oip.TensorMetadata{{Name: "input-0", Datatype: "FP32", Shape: []int64{-1, 2}}}}},
	}}
	h := api.New(st, ctl, nil)
	var mu sync.Mutex
	var submitted []string
	h.MountJobs(st, fakeAdmitter{}, func(name string) {
		mu.Lock()
		defer mu.Unlock()
		submitted = append(submitted, name)
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{st: st, ctl: ctl, srv: srv}, &submitted
}

// jobJSON is a job body due in a day; extra is spliced into its spec.
func jobJSON(name, extra string) string {
	return jobJSONAt(name, time.Now().Add(24*time.Hour), extra)
}

func jobJSONAt(name string, due time.Time, extra string) string {
	deadline := due.UTC().Format(time.RFC3339)
	return fmt.Sprintf(`{"name":%q,"spec":{"input":{"uri":"file:///data/in.csv","columns":[{"tensor":"input-0","columns":["a","b"]}]},
		"deployment":"iris","output":{"uri":"file:///data/out.jsonl"},"deadline":%q,"lease":{"maxReplicas":4,"maxReplicaHours":10}%s}}`,
		name, deadline, extra)
}

func TestJobsAPI(t *testing.T) {
	e, submitted := newJobsEnv(t)
	const ct = "application/json"
	if code, _, b := e.do(t, "POST", "/v1/deployments", ct, `{"name":"iris","spec":{"model":"m.json"}}`); code != 201 {
		t.Fatalf("create deployment iris: %d %s", code, b)
	}
	past := jobJSONAt("past", time.Now().Add(-time.Hour), "")
	tests := []struct {
		name         string
		method, path string
		body         string
		want         int
		contains     []string
	}{
		{"list empty", "GET", "/v1/jobs", "", 200, []string{`"items": []`}},
		{"submit", "POST", "/v1/jobs", jobJSON("weekly", ""), 201, []string{`"name": "weekly"`, `"phase": "Pending"`, `"rowsTotal": 1000`, `"chunkRows": 1000`, "submitted"}},
		{"submit again", "POST", "/v1/jobs", jobJSON("weekly", ""), 409, []string{"job/exists"}},
		{"deadline past", "POST", "/v1/jobs", past, 400, []string{"job/invalid", "spec.deadline", "in the past"}},
		{"invalid", "POST", "/v1/jobs", jobJSON("bad", `,"chunkRows":-5,"onBadRow":"ignore"`), 400, []string{"job/invalid", "spec.chunkRows", "spec.onBadRow"}},
		{"unknown field", "POST", "/v1/jobs", jobJSON("bad", `,"deadlines":1`), 400, []string{"request/malformed", "deadlines"}},
		{"deployment missing", "POST", "/v1/jobs", strings.Replace(jobJSON("nodep", ""), `"iris"`, `"nope"`, 1), 422,
			[]string{"job/input", `deployment \"nope\" not found`}},
		{"tensor not an input", "POST", "/v1/jobs", strings.Replace(jobJSON("tensor", ""), `"input-0"`, `"x"`, 1), 422,
			[]string{"job/input", `tensor \"x\" is not an input of deployment \"iris\": its inputs are input-0`}},
		{"columns against the model", "POST", "/v1/jobs", strings.Replace(jobJSON("width", ""), `["a","b"]`, `["a","b","c"]`, 1), 422,
			[]string{"job/input", `takes 2 columns; the mapping gives 3 (a, b, c)`}},
		{"GPU lease for a deployment without GPUs", "POST", "/v1/jobs", strings.Replace(jobJSON("gpus", ""), `"maxReplicaHours":10`, `"maxReplicaHours":10,"maxGPUHours":4`, 1), 400,
			[]string{"job/invalid", `spec.lease.maxGPUHours: deployment \"iris\": spec asks for no GPUs: use maxReplicaHours`}},
		{"input unreadable", "POST", "/v1/jobs", strings.Replace(jobJSON("unreadable", ""), "in.csv", "missing.csv", 1), 422,
			[]string{"job/input", "cannot be read"}},
		{"refused", "POST", "/v1/jobs", jobJSON("slow", `,"rowsPerSecond":0.5`), 422,
			[]string{"job/refused", "it needs 9 replicas and the lease allows 4", `"neededReplicas": 9`, `"allowedReplicas": 4`}},
		{"get", "GET", "/v1/jobs/weekly", "", 200, []string{`"deployment": "iris"`}},
		{"get missing", "GET", "/v1/jobs/nope", "", 404, []string{"job/not_found"}},
		{"logs", "GET", "/v1/jobs/weekly/logs", "", 200, []string{"  submitted\n"}},
		{"delete pending", "DELETE", "/v1/jobs/weekly", "", 409, []string{"job/running", "cancel it first"}},
		{"cancel pending", "POST", "/v1/jobs/weekly/cancel", "", 200, []string{`"phase": "Cancelled"`, `"cancelRequested": true`}},
		{"cancel again", "POST", "/v1/jobs/weekly/cancel", "", 409, []string{"job/finished"}},
		{"cancel missing", "POST", "/v1/jobs/nope/cancel", "", 404, []string{"job/not_found"}},
		{"method", "PUT", "/v1/jobs/weekly", "{}", 405, []string{"request/method_not_allowed"}},
		{"delete finished", "DELETE", "/v1/jobs/weekly", "", 204, nil},
		{"gone", "GET", "/v1/jobs/weekly", "", 404, nil},
		{"named for you", "POST", "/v1/jobs", jobJSON("", ""), 201, []string{`"name": "job-`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, b := e.do(t, tt.method, tt.path, ct, tt.body)
			if code != tt.want {
				t.Fatalf("%s %s = %d %s; want %d", tt.method, tt.path, code, b, tt.want)
			}
			for _, c := range tt.contains {
				if !strings.Contains(string(b), c) {
					t.Errorf("body %s; want it to contain %q", b, c)
				}
			}
		})
	}
	if len(*submitted) != 2 || (*submitted)[0] != "weekly" {
		t.Errorf("submitted = %q; want weekly and the named one", *submitted)
	}
}

// TestJobsCancelRunning checks that a running job is asked to stop (the
// runner stops it) rather than marked cancelled.
func TestJobsCancelRunning(t *testing.T) {
	e, _ := newJobsEnv(t)
	if code, _, b := e.do(t, "POST", "/v1/deployments", "application/json", `{"name":"iris","spec":{"model":"m.json"}}`); code != 201 {
		t.Fatalf("create deployment iris: %d %s", code, b)
	}
	if code, _, b := e.do(t, "POST", "/v1/jobs", "application/json", jobJSON("weekly", "")); code != 201 {
		t.Fatalf("submit: %d %s", code, b)
	}
	if _, err := e.st.UpdateJob(context.Background(), "weekly", func(j *serving.Job) error {
		j.Status.Phase = serving.JobRunning
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	code, _, b := e.do(t, "POST", "/v1/jobs/weekly/cancel", "", "")
	var j serving.Job
	if code != 200 || json.Unmarshal(b, &j) != nil || j.Status.Phase != serving.JobRunning || !j.Status.CancelRequested {
		t.Fatalf("cancel = %d %s; want 200, still Running, cancel requested", code, b)
	}
}

func TestJobsRouteAction(t *testing.T) {
	for _, tt := range []struct {
		method, path string
		want         auth.Action
	}{
		{"GET", "/v1/jobs", auth.Read},
		{"POST", "/v1/jobs", auth.Deploy},
		{"POST", "/v1/jobs/weekly/cancel", auth.Deploy},
		{"DELETE", "/v1/jobs/weekly", auth.Deploy},
	} {
		if got := api.RouteAction(tt.method, tt.path); got != tt.want {
			t.Errorf("RouteAction(%s %s) = %v; want %v", tt.method, tt.path, got, tt.want)
		}
	}
}

// TestJobsServingModelConfined checks that a job's own model is checked
// as a deployment's would be: a path outside the model roots is refused.
func TestJobsServingModelConfined(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	root := t.TempDir()
	inside := filepath.Join(root, "model.json")
	if err := os.WriteFile(inside, []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	h := api.New(st, &fakeController{}, nil)
	h.ConfineModelPaths(api.ModelPaths{Roots: []string{root}})
	h.MountJobs(st, fakeAdmitter{}, nil)
	for _, tt := range []struct {
		name, model string
		want        int
	}{
		{"outside", "/etc/hostname", 400},
		{"inside", inside, 201},
	} {
		body := strings.Replace(jobJSON("own-"+tt.name, ""), `"deployment":"iris"`,
			fmt.Sprintf(`"serving":{"model":%q,"engine":"trees"}`, tt.model), 1)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/jobs", strings.NewReader(body)))
		if rec.Code != tt.want {
			t.Errorf("%s: POST /v1/jobs = %d %s; want %d", tt.name, rec.Code, rec.Body, tt.want)
		}
		if tt.want == 400 && !strings.Contains(rec.Body.String(), "outside the directories models may be read from") {
			t.Errorf("%s: %s; want it to say the model is outside the roots", tt.name, rec.Body)
		}
	}
}
