package operator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/home"
	"github.com/ebb-ml/ebb/internal/jobs"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/server/servertest"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/yaml"
)

// TestModelJobs runs JobSync against a real kube-apiserver with the
// ModelJob CRD, a SQLite job store, and a jobs manager (home.Jobs) whose
// chunks a gateway stand-in answers with the diabetes model:
//
//   - the ModelJob of docs/jobs.md, applied with kubectl as written but
//     for its locations (on disk) and deadline, runs to Succeeded, its
//     rows and events in its status, its finalizer on;
//   - a ModelJob whose lease cannot fit is Refused with the numbers, and
//     not stored;
//   - a job submitted through the admin API gets its ModelJob; deleting
//     it through the API deletes the ModelJob;
//   - deleting the ModelJob of a running job cancels the job (its
//     in-flight request ends) and removes its record, then the ModelJob.
func TestModelJobs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("EBB_STORE_DSN", "")
	st, err := home.OpenStore(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	model, err := filepath.Abs("../../examples/diabetes/model.json")
	if err != nil {
		t.Fatal(err)
	}
	input, err := filepath.Abs("../../examples/jobs/diabetes.csv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateDeployment(ctx, serving.Deployment{Name: "diabetes", Spec: serving.Spec{Model: model, Engine: "trees"}}); err != nil {
		t.Fatal(err)
	}
	gw := newJobGateway(t, model)
	ctl := nopController{} // apistore_test.go
	mgr := home.NewJobs(home.JobParts{Store: st, Deployments: st, Ctl: ctl, Forwarder: gw},
		home.JobOptions{Poll: 50 * time.Millisecond, Runner: jobs.Options{StatusEvery: 50 * time.Millisecond, RetryBackoff: 5 * time.Millisecond}}, e.log)
	admin := api.New(st, ctl, e.log)
	admin.MountJobs(mgr.Store(), mgr.Admission(), mgr.Submitted)
	srv := httptest.NewServer(admin)
	t.Cleanup(srv.Close)
	js, err := operator.NewJobSync(operator.JobSyncParts{Reader: e.cl, Client: e.cl, Namespace: e.ns, Store: st,
		Check: func(ctx context.Context, j *serving.Job, now time.Time) error {
			return admin.CheckJob(ctx, j, mgr.Admission(), now)
		}, Submitted: mgr.Submitted}, operator.JobSyncOptions{Every: 100 * time.Millisecond, Logger: e.log})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = mgr.Run(runCtx) })
	wg.Go(func() { _ = js.Run(runCtx) })
	t.Cleanup(func() {
		stop()
		wg.Wait()
	})

	// The example of docs/jobs.md, through kubectl.
	example := docsModelJob(t)
	example["spec"].(map[string]any)["input"].(map[string]any)["uri"] = input
	example["spec"].(map[string]any)["output"].(map[string]any)["uri"] = filepath.Join(dir, "diabetes-scores.csv")
	example["spec"].(map[string]any)["deadline"] = time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	b, err := yaml.Marshal(example)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "modeljob.yaml")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	e.kubectl(t, "apply", "-f", file)
	name := example["metadata"].(map[string]any)["name"].(string)
	mj := e.waitModelJob(t, name, 30*time.Second, "Succeeded", func(mj *v1alpha1.ModelJob) bool {
		return mj.Status.Phase == serving.JobSucceeded
	})
	if s := mj.Status; s.RowsDone != 50 || s.RowsTotal != 50 || s.ChunksDone != 5 || len(s.Events) == 0 || s.FinishedAt == nil {
		t.Errorf("status of the succeeded ModelJob: rows %d/%d, chunks %d, %d events, finished %v; want 50/50, 5, some, a time",
			s.RowsDone, s.RowsTotal, s.ChunksDone, len(s.Events), s.FinishedAt)
	}
	if !controllerutil.ContainsFinalizer(mj, operator.JobFinalizer) {
		t.Errorf("finalizers %v, want %s", mj.Finalizers, operator.JobFinalizer)
	}
	j, err := st.GetJob(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(statusJSON(t, j.Status), statusJSON(t, mj.Status.JobStatus)); diff != "" {
		t.Errorf("ModelJob status differs from the store's (-store +ModelJob):\n%s", diff)
	}
	if out, err := os.ReadFile(filepath.Join(dir, "diabetes-scores.csv")); err != nil || bytes.Count(out, []byte("\n")) != 51 {
		t.Errorf("output: %d lines, %v; want a header and 50 rows", bytes.Count(out, []byte("\n")), err)
	}

	// A lease that cannot fit: 50 rows at 0.001 rows/s need 14 hours of
	// one replica, and the deadline is in an hour.
	big := diabetesModelJob(e.ns, "too-big", input, filepath.Join(dir, "too-big.csv"))
	big.Spec.RowsPerSecond, big.Spec.Lease.MaxReplicas = 0.001, 2
	e.create(t, big)
	mj = e.waitModelJob(t, "too-big", 15*time.Second, "Refused", func(mj *v1alpha1.ModelJob) bool {
		return mj.Status.Phase == serving.JobRefused
	})
	if r := mj.Status.Refusal; r == nil || r.Rows != 50 || r.AllowedReplicas != 2 || r.NeededReplicas <= 2 {
		t.Errorf("refusal %+v; want 50 rows, 2 replicas allowed, more needed", r)
	}
	if want := regexp.MustCompile(`cannot finish 50 rows by .* it needs \d+ replicas and the lease allows 2`); !want.MatchString(mj.Status.Message) {
		t.Errorf("message %q; want it to match %s", mj.Status.Message, want)
	}
	if len(mj.Finalizers) != 0 {
		t.Errorf("a refused ModelJob has finalizers %v", mj.Finalizers)
	}
	if _, err := st.GetJob(ctx, "too-big"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused job in the store: %v; want not found", err)
	}

	// Through the admin API: a ModelJob appears, and goes with its job.
	fromAPI := serving.Job{Name: "from-api", Spec: diabetesModelJob(e.ns, "", input, filepath.Join(dir, "from-api.csv")).Spec.JobSpec}
	if code, body := postJSON(t, srv.URL+"/v1/jobs", fromAPI); code != http.StatusCreated {
		t.Fatalf("POST /v1/jobs: %d %s", code, body)
	}
	mj = e.waitModelJob(t, "from-api", 30*time.Second, "Succeeded", func(mj *v1alpha1.ModelJob) bool {
		return mj.Status.Phase == serving.JobSucceeded && mj.Status.RowsDone == 50
	})
	if mj.Spec.Deployment != "diabetes" || mj.Spec.Input.URI != input || mj.Spec.ChunkRows != 10 {
		t.Errorf("spec of the API's job's ModelJob: %+v", mj.Spec.JobSpec)
	}
	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/v1/jobs/from-api", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE /v1/jobs/from-api: %v %v", resp, err)
	}
	e.waitModelJobGone(t, "from-api", 15*time.Second)

	// Deleting the ModelJob of a running job: its requests after the
	// probe's (3 chunks) hang until their context ends, as a busy
	// gateway's would. (A runner does not look for a cancel during its
	// probe.)
	gw.hang("job:slow", 3)
	e.create(t, diabetesModelJob(e.ns, "slow", input, filepath.Join(dir, "slow.csv")))
	e.waitModelJob(t, "slow", 15*time.Second, "a request in flight", func(*v1alpha1.ModelJob) bool { return gw.hanging("job:slow") > 0 })
	e.kubectl(t, "delete", "modeljob", "slow", "--timeout=30s") // waits for the finalizer
	e.waitModelJobGone(t, "slow", 30*time.Second)
	if _, err := st.GetJob(ctx, "slow"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the deleted ModelJob's job in the store: %v; want not found", err)
	}
	if n := gw.hanging("job:slow"); n != 0 {
		t.Errorf("%d requests of the deleted ModelJob's job still in flight", n)
	}
}

// jobGateway is a home.Forwarder that answers chunks with the diabetes
// model, or, for a tenant hang names, holds its requests after the
// first few until their context ends.
type jobGateway struct {
	srv *server.Server // a replica server of the model, run in process

	mu      sync.Mutex
	hangs   map[string]int // tenant → requests answered before holding
	calls   map[string]int // tenant → requests so far
	holding map[string]int // tenant → requests held now
}

func newJobGateway(t *testing.T, model string) *jobGateway {
	t.Helper()
	m, err := trees.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	return &jobGateway{srv: server.New("diabetes", m, server.Options{}), hangs: map[string]int{}, calls: map[string]int{}, holding: map[string]int{}}
}

// hang holds the requests of tenant after the first n.
func (g *jobGateway) hang(tenant string, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hangs[tenant] = n
}

func (g *jobGateway) hanging(tenant string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.holding[tenant]
}

func (g *jobGateway) Forward(ctx context.Context, req *queue.Request) (queue.Result, error) {
	g.mu.Lock()
	g.calls[req.Tenant]++
	after, ok := g.hangs[req.Tenant]
	hang := ok && g.calls[req.Tenant] > after
	if hang {
		g.holding[req.Tenant]++
	}
	g.mu.Unlock()
	if hang {
		<-ctx.Done()
		g.mu.Lock()
		g.holding[req.Tenant]--
		g.mu.Unlock()
		return queue.Result{}, ctx.Err()
	}
	return servertest.Queued(ctx, g.srv, "diabetes", req), nil
}

// docsModelJob returns the ModelJob example of docs/jobs.md: the first
// YAML block after its "On Kubernetes" heading.
func docsModelJob(t *testing.T) map[string]any {
	t.Helper()
	doc, err := os.ReadFile("../../docs/jobs.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "## On Kubernetes: ModelJob")
	if !ok {
		t.Fatal(`docs/jobs.md has no "## On Kubernetes: ModelJob" section`)
	}
	_, block, ok := strings.Cut(after, "```yaml\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("docs/jobs.md: no YAML block in its ModelJob section")
	}
	var obj map[string]any
	if err := yaml.UnmarshalStrict([]byte(block), &obj); err != nil {
		t.Fatalf("docs/jobs.md: the ModelJob example: %v", err)
	}
	if obj["kind"] != "ModelJob" {
		t.Fatalf("docs/jobs.md: the example is a %v, not a ModelJob", obj["kind"])
	}
	return obj
}

// diabetesModelJob is a job that scores input with the diabetes
// deployment, in chunks of 10 rows, due in an hour.
func diabetesModelJob(ns, name, input, output string) *v1alpha1.ModelJob {
	mj := &v1alpha1.ModelJob{}
	mj.Name, mj.Namespace = name, ns
	mj.Spec.JobSpec = serving.JobSpec{
		Input: serving.JobInput{URI: input, IDColumn: "patient", Columns: []serving.TensorColumns{{Tensor: "input",
			Columns: []string{"age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"}}}},
		Deployment: "diabetes",
		Output:     serving.JobOutput{URI: output},
		Deadline:   time.Now().Add(time.Hour).UTC().Truncate(time.Second),
		Lease:      serving.Lease{MaxReplicas: 2, MaxReplicaHours: 1},
		ChunkRows:  10,
	}
	return mj
}

// waitModelJob waits until the named ModelJob satisfies cond.
func (e *env) waitModelJob(t *testing.T, name string, timeout time.Duration, what string, cond func(*v1alpha1.ModelJob) bool) *v1alpha1.ModelJob {
	t.Helper()
	var mj *v1alpha1.ModelJob
	waitFor(t, timeout, "ModelJob "+name+": "+what, func() (bool, string) {
		got := &v1alpha1.ModelJob{}
		if err := e.cl.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: name}, got); err != nil {
			return false, err.Error()
		}
		mj = got
		return cond(mj), fmt.Sprintf("phase %q (%s), rows %d/%d, finalizers %v", mj.Status.Phase, mj.Status.Message, mj.Status.RowsDone, mj.Status.RowsTotal, mj.Finalizers)
	})
	return mj
}

// waitModelJobGone waits until the named ModelJob is deleted.
func (e *env) waitModelJobGone(t *testing.T, name string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "ModelJob "+name+" deleted", func() (bool, string) {
		mj := &v1alpha1.ModelJob{}
		err := e.cl.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: name}, mj)
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		return false, fmt.Sprintf("err %v, phase %q, finalizers %v, deleting %v", err, mj.Status.Phase, mj.Finalizers, mj.DeletionTimestamp)
	})
}

// statusJSON is s as JSON, for comparing statuses that went through the
// API server with the store's.
func statusJSON(t *testing.T, s serving.JobStatus) string {
	t.Helper()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// postJSON posts v as JSON and returns the status code and body.
func postJSON(t *testing.T, url string, v any) (int, string) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}
