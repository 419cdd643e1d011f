package home

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/jobs"
	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// TestJobsRun submits the example diabetes job through the admin API, on
// replicas of its own and feeding an existing deployment, and checks that
// the manager runs it to the end: every patient scored as the model
// scores it alone, at batch priority under the job's tenant, on replicas
// the job asked for and handed back, and the metrics.
func TestJobsRun(t *testing.T) {
	for _, tt := range []struct {
		name, feed string
	}{
		{name: "own"},
		{name: "feed", feed: "diabetes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			st := openTestStore(t)
			gw, ctl := newFakeGateway(t, st), &fakeCtl{}
			if tt.feed != "" {
				d := serving.Deployment{Name: tt.feed, Spec: serving.Spec{Model: diabetesModel, Engine: "trees",
					Scaling: serving.Scaling{MinReplicas: 0, MaxReplicas: 4}}}
				d.Spec.Default()
				if _, err := st.CreateDeployment(ctx, d); err != nil {
					t.Fatal(err)
				}
			}
			reg := prometheus.NewRegistry()
			m := NewJobs(JobParts{Store: st, Deployments: st, Ctl: ctl, Forwarder: gw, Registerer: reg}, fastJobOptions(0), testLog(t))
			admin := NewAdminAPI(AdminParts{Store: st, Ctl: ctl, Jobs: m}, nil)

			j := diabetesJob(t, "scores", t.TempDir(), 10, tt.feed)
			body, _ := json.Marshal(j)
			rec := httptest.NewRecorder()
			admin.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/jobs", bytes.NewReader(body)))
			if rec.Code != http.StatusCreated {
				t.Fatalf("POST /v1/jobs: %d %s", rec.Code, rec.Body)
			}
			got := runJobs(t, m, st, "scores")["scores"]
			if got.Status.Phase != serving.JobSucceeded || got.Status.RowsDone != 50 {
				t.Fatalf("job %s (%s), %d rows done; want Succeeded, 50", got.Status.Phase, got.Status.Message, got.Status.RowsDone)
			}
			checkScores(t, gw.model, j.Spec.Output.URI)
			if !gw.batch || len(gw.tenants) != 1 || !gw.tenants["job:scores"] {
				t.Errorf("requests at batch priority: %v, tenants %v; want true and job:scores", gw.batch, gw.tenants)
			}
			if tt.feed == "" {
				if gw.maxPinned["job-scores"] < 1 {
					t.Errorf("the job's own deployment was pinned at most at %d replicas while it served", gw.maxPinned["job-scores"])
				}
				if _, err := st.GetDeployment(ctx, "job-scores"); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("the job's own deployment after the job: %v; want it deleted", err)
				}
			} else {
				if gw.maxFloor[tt.feed] < 1 {
					t.Errorf("%s had a floor of at most %d while the job fed it", tt.feed, gw.maxFloor[tt.feed])
				}
				d, err := st.GetDeployment(ctx, tt.feed)
				if err != nil || d.Spec.Scaling.MinReplicas != 0 || got.Status.Floor != nil {
					t.Errorf("after the job: minReplicas %d (%v), floor record %+v; want 0 restored, none", d.Spec.Scaling.MinReplicas, err, got.Status.Floor)
				}
			}

			// One scan publishes the finished job.
			sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			_ = m.Run(sctx)
			cancel()
			values, counts := jobSeries(t, reg)
			for k, w := range map[string]float64{
				`ebb_job_rows_total{job="scores"}`:              50,
				`ebb_job_replica_seconds_total{job="scores"}`:   got.Status.ReplicaHours * 3600,
				`ebb_job_phase{job="scores",phase="Succeeded"}`: 1,
				`ebb_job_phase{job="scores",phase="Running"}`:   0,
			} {
				if v, ok := values[k]; !ok || v != w {
					t.Errorf("%s = %v (present: %v); want %v", k, v, ok, w)
				}
			}
			if values[`ebb_job_replica_seconds_total{job="scores"}`] <= 0 {
				t.Errorf("ebb_job_replica_seconds_total is 0 after the job ran on replicas")
			}
			want := map[string]int{"ebb_job_rows_total": 1, "ebb_job_replica_seconds_total": 1, "ebb_job_phase": 7, "ebb_job_deadline_timestamp_seconds": 1}
			if got.Status.ETA != nil {
				want["ebb_job_eta_timestamp_seconds"] = 1
			}
			if !maps.Equal(counts, want) {
				t.Errorf("series per metric %v; want %v", counts, want)
			}
			if v, w := values[`ebb_job_deadline_timestamp_seconds{job="scores"}`], float64(got.Spec.Deadline.UnixMilli())/1e3; v != w {
				t.Errorf("ebb_job_deadline_timestamp_seconds = %v, want %v", v, w)
			}
		})
	}
}

// jobSeries returns the jobs' series, name{labels} → value, and how many
// each metric has.
func jobSeries(t *testing.T, reg *prometheus.Registry) (map[string]float64, map[string]int) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values, counts := map[string]float64{}, map[string]int{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			values[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
			counts[mf.GetName()]++
		}
	}
	return values, counts
}

// TestJobsResume stops the manager in the middle of a job, as a crash
// would (its gateway stops answering, then its context ends), and runs a
// new manager on the same store: the job finishes with every row once,
// and only the chunks not checkpointed are sent again.
func TestJobsResume(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	dir := t.TempDir()
	j := diabetesJob(t, "resume", dir, 5, "") // 10 chunks
	if _, err := st.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	gw1, ctl := newFakeGateway(t, st), &fakeCtl{}
	gw1.block = func(_ *queue.Request, call int) bool { return call > 4 }
	m1 := NewJobs(JobParts{Store: st, Deployments: st, Ctl: ctl, Forwarder: gw1}, fastJobOptions(0), testLog(t))
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m1.Run(rctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		cs, _ := st.ListJobChunks(ctx, "resume")
		if len(cs) >= 4 {
			break
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("%d chunks checkpointed in 20s; want 4", len(cs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	mid, _ := st.GetJob(ctx, "resume")
	recorded, _ := st.ListJobChunks(ctx, "resume")
	if serving.JobFinished(mid.Status.Phase) {
		t.Fatalf("stopped mid-job, the job is %s (%s)", mid.Status.Phase, mid.Status.Message)
	}
	if _, err := st.GetDeployment(ctx, "job-resume"); err != nil {
		t.Fatalf("stopped mid-job, the job's deployment: %v; want it kept for the resume", err)
	}

	gw2 := newFakeGateway(t, st)
	m2 := NewJobs(JobParts{Store: st, Deployments: st, Ctl: ctl, Forwarder: gw2}, fastJobOptions(0), testLog(t))
	got := runJobs(t, m2, st, "resume")["resume"]
	if got.Status.Phase != serving.JobSucceeded {
		t.Fatalf("resumed job %s (%s)", got.Status.Phase, got.Status.Message)
	}
	checkScores(t, gw2.model, j.Spec.Output.URI)
	if want := 10 - len(recorded); gw2.ok != want {
		t.Errorf("the resumed job sent %d chunks; want the %d not checkpointed", gw2.ok, want)
	}
	if _, err := st.GetDeployment(ctx, "job-resume"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the job's deployment after the job: %v; want it deleted", err)
	}
}

// TestJobsConcurrency checks the bound on jobs running at once, and that
// a job whose cancel was asked for after a crash ends at once beyond it,
// its replicas handed back.
func TestJobsConcurrency(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	dir := t.TempDir()
	for _, n := range []string{"a", "b", "c"} {
		if _, err := st.CreateJob(ctx, diabetesJob(t, n, dir, 10, "")); err != nil {
			t.Fatal(err)
		}
	}
	gw, ctl := newFakeGateway(t, st), &fakeCtl{}
	m := NewJobs(JobParts{Store: st, Deployments: st, Ctl: ctl, Forwarder: gw}, fastJobOptions(1), testLog(t))
	for n, j := range runJobs(t, m, st, "a", "b", "c") {
		if j.Status.Phase != serving.JobSucceeded {
			t.Errorf("job %s: %s (%s)", n, j.Status.Phase, j.Status.Message)
		}
	}
	if gw.maxJobs != 1 {
		t.Errorf("%d jobs sent requests at once; the bound is 1", gw.maxJobs)
	}

	// A job holds the only slot, its gateway silent; another, left
	// Running by a crash with its own deployment, was asked to cancel.
	if _, err := st.CreateJob(ctx, diabetesJob(t, "busy", dir, 10, "")); err != nil {
		t.Fatal(err)
	}
	left := diabetesJob(t, "left", dir, 10, "")
	left.Status = serving.JobStatus{Phase: serving.JobRunning, CancelRequested: true, Deployment: "job-left"}
	if _, err := st.CreateJob(ctx, left); err != nil {
		t.Fatal(err)
	}
	d := serving.Deployment{Name: "job-left", Spec: *left.Spec.Serving.DeepCopy()}
	d.Spec.Env = map[string]string{JobEnv: "left"}
	if _, err := st.CreateDeployment(ctx, d); err != nil {
		t.Fatal(err)
	}
	gw.block = func(req *queue.Request, _ int) bool { return req.Tenant == "job:busy" }
	got := runJobs(t, m, st, "left")["left"]
	if got.Status.Phase != serving.JobCancelled {
		t.Errorf("left: %s (%s); want Cancelled", got.Status.Phase, got.Status.Message)
	}
	if _, err := st.GetDeployment(ctx, "job-left"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("job-left after its job was cancelled: %v; want it deleted", err)
	}
}

// TestJobsOwnDeploymentTaken checks that a job does not take over a
// deployment named as its own would be that someone else made.
func TestJobsOwnDeploymentTaken(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	j := diabetesJob(t, "mine", t.TempDir(), 10, "")
	if _, err := st.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	d := serving.Deployment{Name: "job-mine", Spec: *j.Spec.Serving.DeepCopy()}
	if _, err := st.CreateDeployment(ctx, d); err != nil {
		t.Fatal(err)
	}
	gw := newFakeGateway(t, st)
	m := NewJobs(JobParts{Store: st, Deployments: st, Ctl: &fakeCtl{}, Forwarder: gw}, fastJobOptions(0), testLog(t))
	got := runJobs(t, m, st, "mine")["mine"]
	if got.Status.Phase != serving.JobFailed || gw.calls != 0 {
		t.Errorf("job %s (%s), %d requests; want Failed before any request", got.Status.Phase, got.Status.Message, gw.calls)
	}
	if _, err := st.GetDeployment(ctx, "job-mine"); err != nil {
		t.Errorf("the other deployment after the job: %v; want it kept", err)
	}
}

// TestForwardPredictor checks how a gateway's answers map to a chunk's
// result, a retry or a permanent failure.
func TestForwardPredictor(t *testing.T) {
	for _, tt := range []struct {
		status          int
		err             error
		wantErr, wantPr bool
	}{
		{status: 200},
		{status: 429, wantErr: true},
		{status: 503, wantErr: true},
		{status: 404, wantErr: true},
		{status: 500, wantErr: true},
		{status: 504, wantErr: true},
		{status: 400, wantErr: true, wantPr: true},
		{status: 422, wantErr: true, wantPr: true},
		{status: 413, wantErr: true, wantPr: true},
		{err: errors.New("gone"), wantErr: true},
	} {
		fw := forwarderFunc(func(_ context.Context, req *queue.Request) (int, string, []byte, error) {
			if req.Priority != queue.PriorityBatch || req.Tenant != "job:x" || req.Deployment != "d" {
				t.Errorf("request %+v; want batch priority, tenant job:x, deployment d", req)
			}
			return tt.status, "application/json", []byte(`{"outputs":[]}`), tt.err
		})
		resp, err := forwardPredictor{fw: fw, tenant: "job:x"}.Infer(context.Background(), "d", jobs.Message{Body: []byte(`{}`)})
		body := resp.Body
		if (err != nil) != tt.wantErr || errors.Is(err, jobs.ErrPermanent) != tt.wantPr {
			t.Errorf("status %d, err %v: got %v (permanent %v); want an error %v, permanent %v",
				tt.status, tt.err, err, errors.Is(err, jobs.ErrPermanent), tt.wantErr, tt.wantPr)
		}
		if err == nil && string(body) != `{"outputs":[]}` {
			t.Errorf("status %d: body %q", tt.status, body)
		}
	}
}

type forwarderFunc func(ctx context.Context, req *queue.Request) (int, string, []byte, error)

func (f forwarderFunc) Forward(ctx context.Context, req *queue.Request) (queue.Result, error) {
	status, ct, body, err := f(ctx, req)
	return queue.Result{Status: status, ContentType: ct, Body: body}, err
}

var _ api.JobAdmitter = (*jobs.Admission)(nil)

// TestJobFloors checks the floors jobs hold on a deployment they feed:
// the largest hold, within the deployment's maxReplicas; its own value
// back when the last lets go, even after a restart of the manager; and
// an owner's change made meanwhile kept.
func TestJobFloors(t *testing.T) {
	type step struct {
		op      string // hold, owner (sets minReplicas to n), restart
		job     string
		n       int32
		wantMin int32
		// wantRec is each job's floor record after the step: own value
		// and set, or absent.
		wantRec map[string][2]int32
	}
	for _, tt := range []struct {
		name  string
		steps []step
	}{
		{"one job", []step{
			{op: "hold", job: "a", n: 3, wantMin: 3, wantRec: map[string][2]int32{"a": {1, 3}}},
			{op: "hold", job: "a", n: 2, wantMin: 2, wantRec: map[string][2]int32{"a": {1, 2}}},
			{op: "hold", job: "a", n: 0, wantMin: 1, wantRec: map[string][2]int32{}},
		}},
		{"two jobs", []step{
			{op: "hold", job: "a", n: 3, wantMin: 3, wantRec: map[string][2]int32{"a": {1, 3}}},
			{op: "hold", job: "b", n: 4, wantMin: 4, wantRec: map[string][2]int32{"a": {1, 4}, "b": {1, 4}}},
			{op: "hold", job: "b", n: 0, wantMin: 3, wantRec: map[string][2]int32{"a": {1, 3}}},
			{op: "hold", job: "a", n: 0, wantMin: 1, wantRec: map[string][2]int32{}},
		}},
		{"within maxReplicas", []step{
			{op: "hold", job: "a", n: 9, wantMin: 5, wantRec: map[string][2]int32{"a": {1, 5}}},
			{op: "hold", job: "a", n: 0, wantMin: 1, wantRec: map[string][2]int32{}},
		}},
		{"the owner's change is kept", []step{
			{op: "hold", job: "a", n: 3, wantMin: 3, wantRec: map[string][2]int32{"a": {1, 3}}},
			{op: "owner", n: 2, wantMin: 2, wantRec: map[string][2]int32{"a": {1, 3}}},
			{op: "hold", job: "a", n: 0, wantMin: 2, wantRec: map[string][2]int32{}},
		}},
		{"after a restart", []step{
			{op: "hold", job: "a", n: 3, wantMin: 3, wantRec: map[string][2]int32{"a": {1, 3}}},
			{op: "restart", wantMin: 3, wantRec: map[string][2]int32{"a": {1, 3}}},
			{op: "hold", job: "a", n: 0, wantMin: 1, wantRec: map[string][2]int32{}},
		}},
		{"two jobs, a restart", []step{
			{op: "hold", job: "a", n: 2, wantMin: 2, wantRec: map[string][2]int32{"a": {1, 2}}},
			{op: "hold", job: "b", n: 3, wantMin: 3, wantRec: map[string][2]int32{"a": {1, 3}, "b": {1, 3}}},
			{op: "restart", wantMin: 3, wantRec: map[string][2]int32{"a": {1, 3}, "b": {1, 3}}},
			{op: "hold", job: "b", n: 3, wantMin: 3, wantRec: map[string][2]int32{"a": {1, 3}, "b": {1, 3}}},
			{op: "hold", job: "a", n: 0, wantMin: 3, wantRec: map[string][2]int32{"b": {1, 3}}},
			{op: "hold", job: "b", n: 0, wantMin: 1, wantRec: map[string][2]int32{}},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			st := openTestStore(t)
			d := serving.Deployment{Name: "d", Spec: serving.Spec{Model: diabetesModel, Engine: "trees",
				Scaling: serving.Scaling{MinReplicas: 1, MaxReplicas: 5}}}
			d.Spec.Default()
			if _, err := st.CreateDeployment(ctx, d); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{"a", "b"} {
				if _, err := st.CreateJob(ctx, diabetesJob(t, n, t.TempDir(), 10, "d")); err != nil {
					t.Fatal(err)
				}
			}
			newManager := func() *Jobs {
				return NewJobs(JobParts{Store: st, Deployments: st, Ctl: &fakeCtl{}}, JobOptions{}, testLog(t))
			}
			m := newManager()
			for i, s := range tt.steps {
				switch s.op {
				case "hold":
					if err := m.setFloor(ctx, s.job, "d", s.n); err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
				case "owner":
					if _, err := st.UpdateDeployment(ctx, "d", func(d *serving.Deployment) error {
						d.Spec.Scaling.MinReplicas = s.n
						return nil
					}); err != nil {
						t.Fatal(err)
					}
				case "restart":
					m = newManager()
				}
				got, err := st.GetDeployment(ctx, "d")
				if err != nil {
					t.Fatal(err)
				}
				if got.Spec.Scaling.MinReplicas != s.wantMin {
					t.Errorf("step %d (%s %s %d): minReplicas %d; want %d", i, s.op, s.job, s.n, got.Spec.Scaling.MinReplicas, s.wantMin)
				}
				for _, n := range []string{"a", "b"} {
					j, _ := st.GetJob(ctx, n)
					want, ok := s.wantRec[n]
					switch rec := j.Status.Floor; {
					case !ok && rec != nil:
						t.Errorf("step %d: job %s records %+v; want no floor", i, n, *rec)
					case ok && (rec == nil || rec.Deployment != "d" || rec.MinReplicas != want[0] || rec.Set != want[1]):
						t.Errorf("step %d: job %s records %+v; want own %d, set %d", i, n, rec, want[0], want[1])
					}
				}
			}
		})
	}
}

// TestQueueForwarder sends chunks as a cluster's operator does: into the
// async queue, where a worker (a gateway's) runs them through its chain
// at batch priority, and back with the result; a request whose caller
// gives up is cancelled in the queue.
func TestQueueForwarder(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	// The operator's own store, when it is one the gateways can share
	// (PostgreSQL): SQLite's stands in for it.
	q, closeQ, err := AsyncFlags{}.Open(ctx, st, "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer closeQ()
	qf := &QueueForwarder{Queue: q, Poll: 10 * time.Millisecond}

	// No worker yet: the caller gives up, and the request is cancelled.
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	req := &queue.Request{ID: queue.NewID(), Tenant: "job:q", Deployment: "d", Priority: queue.PriorityBatch,
		ContentType: "application/json", Body: []byte(`{"n":1}`)}
	if _, err := qf.Forward(cctx, req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Forward without a worker: %v; want the caller's deadline", err)
	}
	cancel()
	if rec, err := qf.Queue.Get(ctx, "job:q", req.ID); err != nil || rec.State != queue.Cancelled {
		t.Errorf("the abandoned request: %+v, %v; want it cancelled", rec.State, err)
	}

	seen := make(chan queue.Request, 1)
	gw := forwarderFunc(func(_ context.Context, r *queue.Request) (int, string, []byte, error) {
		select {
		case seen <- *r:
		default:
		}
		return http.StatusOK, "application/json", append([]byte(`{"echo":`), append(r.Body, '}')...), nil
	})
	w := queue.NewWorker(qf.Queue, gw, queue.WorkerOptions{Poll: 10 * time.Millisecond, Logger: testLog(t)})
	wctx, stop := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	defer func() {
		stop()
		<-wdone
	}()
	// A chunk with binary tensor data: its header length goes through
	// the queue with it.
	resp, err := forwardPredictor{fw: qf, tenant: "job:q"}.Infer(ctx, "d", jobs.Message{Body: []byte("{\"n\":2}\x01\x02"), HeaderLength: 7})
	if body := resp.Body; err != nil || string(body) != "{\"echo\":{\"n\":2}\x01\x02}" {
		t.Fatalf("Infer through the queue: %q, %v", body, err)
	}
	if r := <-seen; r.Priority != queue.PriorityBatch || r.Tenant != "job:q" || r.Deployment != "d" ||
		r.HeaderLength != 7 || r.ContentType != "application/octet-stream" {
		t.Errorf("the worker ran %+v; want batch priority, tenant job:q, deployment d, header length 7, application/octet-stream", r)
	}
}

// TestJobsOff checks an operator with no queue to the gateways: jobs are
// refused at submit, saying what to give it.
func TestJobsOff(t *testing.T) {
	t.Setenv("EBB_STORE_DSN", "")
	st := openTestStore(t)
	fw, closeFw, err := JobsFlags{}.Forwarder(context.Background(), st, "")
	if err != nil || fw != nil {
		t.Fatalf("Forwarder with no queue and a SQLite store: %v, %v; want none, no error", fw, err)
	}
	closeFw()
	m := NewJobs(JobParts{Store: st, Deployments: st, Ctl: &fakeCtl{}, Forwarder: fw}, JobOptions{}, testLog(t))
	admin := NewAdminAPI(AdminParts{Store: st, Ctl: &fakeCtl{}, Jobs: m}, nil)
	body, _ := json.Marshal(diabetesJob(t, "off", t.TempDir(), 10, ""))
	rec := httptest.NewRecorder()
	admin.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/jobs", bytes.NewReader(body)))
	if rec.Code != http.StatusUnprocessableEntity || !strings.Contains(rec.Body.String(), "--jobs-queue") {
		t.Errorf("POST /v1/jobs = %d %s; want 422 naming --jobs-queue", rec.Code, rec.Body)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Errorf("Run with jobs off: %v; want nil at once", err)
	}
}
