package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// countingModel wraps a model and records the rows of every Predict call.
type countingModel struct {
	engine.Model

	mu    sync.Mutex
	sizes []int
}

func (m *countingModel) Predict(ctx context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
	m.mu.Lock()
	m.sizes = append(m.sizes, int(in[0].Shape[0]))
	m.mu.Unlock()
	return m.Model.Predict(ctx, in)
}

// Sizes returns the rows of each call so far, sorted.
func (m *countingModel) Sizes() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := slices.Clone(m.sizes)
	slices.Sort(s)
	return s
}

func TestBatchingOnOrOff(t *testing.T) {
	tests := []struct {
		name    string
		model   engine.Model
		policy  *serving.Batching
		want    bool
		wantLog []string
	}{
		{name: "not asked", model: &fakeModel{width: 4}, want: false},
		{name: "model can batch", model: &fakeModel{width: 4}, policy: BatchingPolicy(8, []int{4}, time.Millisecond), want: true,
			wantLog: []string{"batching on", "maxBatchSize=8"}},
		{name: "fixed first dimension", model: &twoInputModel{}, policy: BatchingPolicy(8, nil, 0), want: false,
			wantLog: []string{"batching is off", `tensor \"a\" has shape [1]`, "(-1)"}},
		{name: "invalid policy", model: &fakeModel{width: 4}, policy: &serving.Batching{MaxBatchSize: 4, PreferredBatchSizes: []int{9}}, want: false,
			wantLog: []string{"batching is off: invalid policy", "preferred batch size 9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			s := New("m", tt.model, Options{Batching: tt.policy, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if got := s.Batching(); got != tt.want {
				t.Errorf("Batching() = %v, want %v", got, tt.want)
			}
			if tt.wantLog == nil && strings.Contains(logs.String(), "batching") {
				t.Errorf("logged %q, want nothing about batching", logs.String())
			}
			for _, sub := range tt.wantLog {
				if !strings.Contains(logs.String(), sub) {
					t.Errorf("log %q does not mention %q", logs.String(), sub)
				}
			}
		})
	}
	if got := BatchingPolicy(0, []int{1}, time.Second); got != nil {
		t.Errorf("BatchingPolicy(0, ...) = %+v, want nil (off)", got)
	}
}

// TestBatchingThroughHandler sends 8 concurrent one-row infer requests to
// the handler with MaxBatchSize 4 and a queue delay no test waits for: half
// ask for every output, half only for "label", so they form two full
// batches, and each request gets the answer for its own row.
func TestBatchingThroughHandler(t *testing.T) {
	m := &countingModel{Model: &fakeModel{width: 4}}
	s := New("iris", m, Options{Batching: BatchingPolicy(4, nil, time.Hour)})
	const n = 8
	bodies := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			outputs := ""
			if i%2 == 1 {
				outputs = `,"outputs":[{"name":"label"}]`
			}
			body := fmt.Sprintf(`{"id":"%d","inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[%d,0,0,-1]}]%s}`, i, i, outputs)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest("POST", "/v2/models/iris/infer", strings.NewReader(body)))
			bodies[i] = fmt.Sprintf("%d %s", rec.Code, strings.TrimSpace(rec.Body.String()))
		})
	}
	wg.Wait()
	for i, got := range bodies {
		label := 0
		if i > 1 {
			label = 1
		}
		want := fmt.Sprintf(`200 {"model_name":"iris","id":"%d","outputs":[{"name":"score","datatype":"FP32","shape":[1],"data":[%d]},{"name":"label","datatype":"INT64","shape":[1],"data":[%d]}]}`, i, i-1, label)
		if i%2 == 1 {
			want = fmt.Sprintf(`200 {"model_name":"iris","id":"%d","outputs":[{"name":"label","datatype":"INT64","shape":[1],"data":[%d]}]}`, i, label)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("request %d (-want +got):\n%s", i, diff)
		}
	}
	if diff := cmp.Diff([]int{4, 4}, m.Sizes()); diff != "" {
		t.Errorf("batch sizes (-want +got):\n%s", diff)
	}
}

// TestBatchingCancelledRequest checks that a request whose context ends
// while it waits for a batch returns the context's error, never reaches the
// model, and leaves no goroutine behind.
func TestBatchingCancelledRequest(t *testing.T) {
	before := runtime.NumGoroutine()
	m := &countingModel{Model: &fakeModel{width: 4}}
	s := New("iris", m, Options{Batching: BatchingPolicy(4, nil, time.Hour)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Infer(ctx, []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{1, 4}, Data: []float32{1, 2, 3, 4}}}, nil)
		done <- err
	}()
	waitFor(t, "the request to queue", func() bool { return s.batcher.Queued() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Infer = %v, want context.Canceled", err)
	}
	if q := s.batcher.Queued(); q != 0 {
		t.Errorf("Queued() = %d, want 0", q)
	}
	if got := m.Sizes(); len(got) != 0 {
		t.Errorf("the model saw batches %v", got)
	}
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

const diabetesDir = "../../examples/diabetes"

// TestBatchingDiabetesEndToEnd serves the diabetes example with the trees
// engine over a real HTTP server with batching on, sends the golden rows as
// concurrent requests, and checks every prediction against xgboost's.
func TestBatchingDiabetesEndToEnd(t *testing.T) {
	data, err := os.ReadFile(diabetesDir + "/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Inputs      [][]float64 `json:"inputs"`
		Predictions []float64   `json:"predictions"`
	}
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatal(err)
	}
	if len(golden.Inputs) != 50 || len(golden.Predictions) != 50 {
		t.Fatalf("golden.json has %d inputs and %d predictions, want 50 of each", len(golden.Inputs), len(golden.Predictions))
	}
	tests := []struct {
		name   string
		policy *serving.Batching
		// rows cycles over the request sizes.
		rows []int
		// wantSizes, when set, are the batch sizes the model must see.
		wantSizes []int
	}{
		{name: "one-row requests fill batches of 10", policy: BatchingPolicy(10, nil, 10*time.Second), rows: []int{1},
			wantSizes: []int{10, 10, 10, 10, 10}},
		{name: "mixed sizes and a short delay", policy: BatchingPolicy(8, []int{4}, time.Millisecond), rows: []int{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := trees.Load(diabetesDir + "/model.json")
			if err != nil {
				t.Fatal(err)
			}
			counted := &countingModel{Model: m}
			s := New("diabetes", counted, Options{Batching: tt.policy})
			if !s.Batching() {
				t.Fatal("batching is off for the diabetes model")
			}
			ln := listen(t)
			url := "http://" + ln.Addr().String() + "/v2/models/diabetes/infer"
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- s.Serve(ctx, ln) }()

			type span struct{ lo, hi int }
			var spans []span
			for lo, i := 0, 0; lo < len(golden.Inputs); i++ {
				hi := min(lo+tt.rows[i%len(tt.rows)], len(golden.Inputs))
				spans = append(spans, span{lo, hi})
				lo = hi
			}
			got := make([]float64, len(golden.Inputs))
			errs := make([]error, len(spans))
			var wg sync.WaitGroup
			for i, sp := range spans {
				wg.Go(func() {
					preds, err := postRows(url, golden.Inputs[sp.lo:sp.hi])
					if err == nil && len(preds) != sp.hi-sp.lo {
						err = fmt.Errorf("%d predictions for %d rows", len(preds), sp.hi-sp.lo)
					}
					if err != nil {
						errs[i] = err
						return
					}
					copy(got[sp.lo:sp.hi], preds)
				})
			}
			wg.Wait()
			cancel()
			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}
			for i, err := range errs {
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
			}
			for i, want := range golden.Predictions {
				if d := math.Abs(got[i] - want); d > 1e-6*math.Abs(want) && d > 1e-6 {
					t.Errorf("row %d: predicted %.9g, xgboost says %.9g", i, got[i], want)
				}
			}
			sizes := counted.Sizes()
			if sum := sumInts(sizes); sum != len(golden.Inputs) {
				t.Errorf("the model saw %d rows in batches %v, want %d", sum, sizes, len(golden.Inputs))
			}
			if tt.wantSizes != nil {
				if diff := cmp.Diff(tt.wantSizes, sizes); diff != "" {
					t.Errorf("batch sizes (-want +got):\n%s", diff)
				}
			}
			for _, n := range sizes {
				if n > tt.policy.MaxBatchSize {
					t.Errorf("batch of %d rows exceeds MaxBatchSize %d", n, tt.policy.MaxBatchSize)
				}
			}
		})
	}
}

// postRows sends rows as one OIP v2 infer request and returns the
// predictions.
func postRows(url string, rows [][]float64) ([]float64, error) {
	body, err := json.Marshal(map[string]any{
		"inputs": []map[string]any{{"name": "input", "shape": []int{len(rows), len(rows[0])}, "datatype": "FP32", "data": rows}},
	})
	if err != nil {
		return nil, err
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Outputs []struct {
			Data []float64 `json:"data"`
		} `json:"outputs"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != 200 || len(out.Outputs) != 1 {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, out.Error)
	}
	return out.Outputs[0].Data, nil
}

func sumInts(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}
