package home

import (
	"context"
	"encoding/csv"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/jobs"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/server/servertest"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// The fixture of the jobs manager's tests: a real SQLite store, and a
// gateway that runs the diabetes model in process and answers as ebb's
// would from the deployments in the store: 404 for a deployment it does
// not know, 503 for one pinned at zero.

var (
	diabetesModel = filepath.Join("..", "..", "examples", "diabetes", "model.json")
	diabetesCSV   = filepath.Join("..", "..", "examples", "jobs", "diabetes.csv")
)

// fakeGateway is a Forwarder.
type fakeGateway struct {
	st    Store
	model *trees.Model   // the diabetes model, which the test's checks predict with too
	srv   *server.Server // a replica server of model, in process

	mu        sync.Mutex
	calls     int
	tenants   map[string]bool
	batch     bool             // every request at batch priority
	maxPinned map[string]int32 // deployment → most spec.replicas seen
	maxFloor  map[string]int32 // deployment → most minReplicas seen
	inFlight  map[string]int   // tenant → requests in flight
	maxJobs   int              // most tenants in flight at once
	ok        int              // requests answered 200
	// block, when set, is asked before each call (numbered from 1): true
	// holds the call until its ctx ends, as a gateway gone away would.
	block func(req *queue.Request, call int) bool
}

func newFakeGateway(t *testing.T, st Store) *fakeGateway {
	t.Helper()
	m, err := trees.Load(diabetesModel)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeGateway{st: st, model: m, srv: server.New("diabetes", m, server.Options{}), batch: true, tenants: map[string]bool{}, maxPinned: map[string]int32{},
		maxFloor: map[string]int32{}, inFlight: map[string]int{}}
}

func (g *fakeGateway) Forward(ctx context.Context, req *queue.Request) (queue.Result, error) {
	g.mu.Lock()
	g.calls++
	call := g.calls
	g.tenants[req.Tenant] = true
	g.batch = g.batch && req.Priority == queue.PriorityBatch
	g.inFlight[req.Tenant]++
	g.maxJobs = max(g.maxJobs, len(g.inFlight))
	block := g.block
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		if g.inFlight[req.Tenant]--; g.inFlight[req.Tenant] == 0 {
			delete(g.inFlight, req.Tenant)
		}
		g.mu.Unlock()
	}()
	if block != nil && block(req, call) {
		<-ctx.Done()
		return queue.Result{}, ctx.Err()
	}
	d, err := g.st.GetDeployment(ctx, req.Deployment)
	if errors.Is(err, store.ErrNotFound) {
		return queue.Result{Status: http.StatusNotFound, ContentType: "application/json", Body: []byte(`{"error":"deployment not found"}`)}, nil
	}
	if err != nil {
		return queue.Result{}, err
	}
	if d.Spec.Replicas != nil && *d.Spec.Replicas == 0 {
		return queue.Result{Status: http.StatusServiceUnavailable, ContentType: "application/json", Body: []byte(`{"error":"scaled to zero"}`)}, nil
	}
	res := servertest.Queued(ctx, g.srv, "diabetes", req)
	if res.Status != http.StatusOK {
		return res, nil
	}
	g.mu.Lock()
	if d.Spec.Replicas != nil {
		g.maxPinned[d.Name] = max(g.maxPinned[d.Name], *d.Spec.Replicas)
	}
	g.maxFloor[d.Name] = max(g.maxFloor[d.Name], d.Spec.Scaling.MinReplicas)
	g.ok++
	g.mu.Unlock()
	return res, nil
}

// fakeCtl is the control loop as the admin API sees it.
type fakeCtl struct {
	mu       sync.Mutex
	notified map[string]int
}

func (c *fakeCtl) Status(string) serving.Status { return serving.Status{} }
func (c *fakeCtl) Notify(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.notified == nil {
		c.notified = map[string]int{}
	}
	c.notified[name]++
}

func openTestStore(t *testing.T) Store {
	t.Helper()
	t.Setenv("EBB_STORE_DSN", "")
	st, err := OpenStore(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// fastJobOptions make the manager and its runners quick.
func fastJobOptions(concurrency int) JobOptions {
	return JobOptions{Concurrency: concurrency, Poll: 20 * time.Millisecond,
		Runner: jobs.Options{StatusEvery: 20 * time.Millisecond, RetryBackoff: 5 * time.Millisecond}}
}

// diabetesJob is examples/jobs/diabetes-job.yaml with its output in dir,
// chunks of chunkRows rows, and feeding deployment when it is not empty.
func diabetesJob(t *testing.T, name, dir string, chunkRows int32, deployment string) serving.Job {
	t.Helper()
	in, err := filepath.Abs(diabetesCSV)
	if err != nil {
		t.Fatal(err)
	}
	model, err := filepath.Abs(diabetesModel)
	if err != nil {
		t.Fatal(err)
	}
	j := serving.Job{Name: name, Spec: serving.JobSpec{
		Input: serving.JobInput{URI: in, IDColumn: "patient", Columns: []serving.TensorColumns{{Tensor: "input",
			Columns: []string{"age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"}}}},
		Output:    serving.JobOutput{URI: filepath.Join(dir, name+".csv")},
		Deadline:  time.Now().Add(time.Hour),
		Lease:     serving.Lease{MaxReplicas: 2, MaxReplicaHours: 1},
		ChunkRows: chunkRows,
	}, Status: serving.JobStatus{Phase: serving.JobPending}}
	if deployment != "" {
		j.Spec.Deployment = deployment
	} else {
		j.Spec.Serving = &serving.Spec{Model: model, Engine: "trees"}
	}
	j.Spec.Default()
	if err := j.Validate(time.Now()); err != nil {
		t.Fatal(err)
	}
	return j
}

// runJobs runs m until every job named is finished, or fails the test.
func runJobs(t *testing.T, m *Jobs, st Store, names ...string) map[string]serving.Job {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	out := map[string]serving.Job{}
	deadline := time.Now().Add(30 * time.Second)
	for len(out) < len(names) {
		if time.Now().After(deadline) {
			t.Fatalf("jobs not finished in 30s: %d of %d", len(out), len(names))
		}
		time.Sleep(20 * time.Millisecond)
		for _, n := range names {
			j, err := st.GetJob(context.Background(), n)
			if err == nil && serving.JobFinished(j.Status.Phase) {
				out[n] = j
			}
		}
	}
	return out
}

// checkScores checks a job's CSV output against the model's prediction
// for each patient alone, every patient once and in order.
func checkScores(t *testing.T, m *trees.Model, path string) {
	t.Helper()
	in := readCSVFile(t, diabetesCSV)
	out := readCSVFile(t, path)
	if len(out) != len(in) || out[0][0] != "patient" || out[0][1] != "predict" {
		t.Fatalf("%s: %d lines, header %q; want %d and patient,predict", path, len(out), out[0], len(in))
	}
	for i, rec := range in[1:] {
		row := make([]float32, 10)
		for k := range row {
			v, _ := strconv.ParseFloat(rec[k+1], 64)
			row[k] = float32(v)
		}
		p, err := m.Predict(context.Background(), []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{1, 10}, Data: row}})
		if err != nil {
			t.Fatal(err)
		}
		want := p[0].Data.([]float32)[0]
		got, err := strconv.ParseFloat(out[i+1][1], 32)
		if out[i+1][0] != rec[0] || err != nil || float32(got) != want {
			t.Fatalf("line %d: %q; want %s,%v", i+1, out[i+1], rec[0], want)
		}
	}
}

func readCSVFile(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func testLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}
