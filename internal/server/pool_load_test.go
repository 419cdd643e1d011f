package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/pool"
	"github.com/ebb-ml/ebb/internal/server/servertest"
	"github.com/valyala/fasthttp"
)

// sizedModel is a fakeModel that reports its size and whether it was
// closed.
type sizedModel struct {
	fakeModel
	bytes  int64
	closed atomic.Bool
}

func (m *sizedModel) ModelBytes() int64 { return m.bytes }
func (m *sizedModel) Close() error      { m.closed.Store(true); return nil }

var _ engine.Sizer = (*sizedModel)(nil)

// fakeLoader loads sizedModels of the size the model path names
// ("1000" is 1000 bytes), counting loads; gate, when set, holds each
// load until closed; "fail" fails.
type fakeLoader struct {
	gate   chan struct{}
	loads  atomic.Int64
	mu     sync.Mutex
	models map[string]*sizedModel
}

func (l *fakeLoader) load(_ context.Context, req LoadRequest) (LoadedModel, error) {
	l.loads.Add(1)
	if l.gate != nil {
		<-l.gate
	}
	if req.Model == "fail" {
		return LoadedModel{}, errors.New("engine fake: the file is corrupt")
	}
	var size int64
	fmt.Sscan(req.Model, &size)
	m := &sizedModel{fakeModel: fakeModel{width: 2}, bytes: size}
	l.mu.Lock()
	if l.models == nil {
		l.models = map[string]*sizedModel{}
	}
	l.models[req.Name] = m
	l.mu.Unlock()
	return LoadedModel{Model: m}, nil
}

func (l *fakeLoader) model(name string) *sizedModel {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.models[name]
}

func fakeLoad(model string, bytes int64) map[string]any {
	p := map[string]any{"model": model}
	if bytes > 0 {
		p["bytes"] = bytes
	}
	return map[string]any{"parameters": p}
}

var twoRows = []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{1, 2}, Data: []float32{1, 2}}}

func TestPoolBudget(t *testing.T) {
	l := &fakeLoader{}
	s := NewPool("p", Options{}, PoolOptions{Budget: 1000, Load: l.load})
	c := servertest.Start(t, s)
	load := func(name, model string, bytes int64) (int, string) {
		code, body := postJSON(t, c.Base+"/v2/repository/models/"+name+"/load", fakeLoad(model, bytes))
		return code, string(body)
	}

	if code, body := load("a", "600", 0); code != http.StatusOK {
		t.Fatalf("load a: %d %s", code, body)
	}
	tests := []struct {
		name, model string
		bytes       int64
		want        []string
		loads       int64 // loader calls it makes
	}{
		{"whole", "5000", 5000, []string{"needs 4.9 KiB (5000 bytes, as the load request gave it), more than this replica's whole memory budget of 1000 B (1000 bytes)"}, 0},
		{"given", "500", 500, []string{"needs 500 B (500 bytes, as the load request gave it)", "400 B free", "1000 bytes", "600 B held"}, 0},
		{"measured", "500", 0, []string{"needs 500 B (500 bytes, measured after load)", "400 B free"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := l.loads.Load()
			code, body := load("b", tt.model, tt.bytes)
			if code != http.StatusInsufficientStorage {
				t.Fatalf("load b: %d %s, want 507", code, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("507 body %s lacks %q", body, w)
				}
			}
			var eb budgetErrorBody
			if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.BudgetBytes != 1000 || eb.UsedBytes != 600 || eb.Model != "b" {
				t.Errorf("507 body %s (%v): want the budget, used bytes and model", body, err)
			}
			if got := l.loads.Load() - before; got != tt.loads {
				t.Errorf("the loader ran %d times, want %d", got, tt.loads)
			}
			if tt.loads > 0 && !l.model("b").closed.Load() {
				t.Error("the refused model was not closed")
			}
			for _, st := range index(t, c.Base) {
				if st.Name == "b" {
					t.Errorf("refused model in the index: %+v", st)
				}
			}
		})
	}
	// Room made, it loads.
	if code, body := postJSON(t, c.Base+"/v2/repository/models/a/unload", nil); code != http.StatusOK {
		t.Fatalf("unload a: %d %s", code, body)
	}
	if !l.model("a").closed.Load() {
		t.Error("the unloaded model was not closed")
	}
	if code, body := load("b", "500", 500); code != http.StatusOK {
		t.Fatalf("load b after unloading a: %d %s", code, body)
	}
	if info := s.Info().Pool; info.UsedBytes != 500 || info.Models != 1 {
		t.Errorf("pool info %+v, want 500 bytes in 1 model", info)
	}
}

// TestPoolConcurrentLoad: many loads of one model at once load it once and
// all answer READY; a request for it meanwhile waits for the load.
func TestPoolConcurrentLoad(t *testing.T) {
	l := &fakeLoader{gate: make(chan struct{})}
	s := NewPool("p", Options{}, PoolOptions{Load: l.load})
	c := servertest.Start(t, s)

	const n = 20
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			codes[i], _ = postJSON(t, c.Base+"/v2/repository/models/m/load", fakeLoad("100", 0))
		})
	}
	inferred := make(chan error, 1)
	loading := make(chan struct{}) // the index shows the load under way
	go func() {
		for {
			if st := index(t, c.Base); len(st) == 1 && st[0].State == pool.Loading {
				break
			}
			time.Sleep(time.Millisecond)
		}
		close(loading)
		_, err := c.PostREST("m", oip.InferRequest{}, twoRows, false)
		inferred <- err
	}()
	// The load cannot end before the gate opens, so the poll above sees
	// it loading however slow the machine is.
	<-loading
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-inferred:
		t.Fatalf("infer answered before the load ended: %v", err)
	default:
	}
	close(l.gate)
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusOK {
			t.Errorf("load %d: %d", i, code)
		}
	}
	if got := l.loads.Load(); got != 1 {
		t.Errorf("the model was loaded %d times, want once", got)
	}
	if err := <-inferred; err != nil {
		t.Errorf("infer held during the load: %v", err)
	}
}

// TestPoolUnloadWaitsForInFlight: an unload takes the model out of the
// index at once, and closes it only once its requests in flight end.
func TestPoolUnloadWaitsForInFlight(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	m := &sizedModel{fakeModel: fakeModel{width: 2}, bytes: 10}
	inner := m.fakeModel
	m.predict = func(ctx context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
		close(started)
		<-release
		inner.predict = nil
		return inner.Predict(ctx, in)
	}
	s := NewPool("p", Options{}, PoolOptions{Load: func(context.Context, LoadRequest) (LoadedModel, error) {
		return LoadedModel{Model: m}, nil
	}})
	c := servertest.Start(t, s)
	if code, body := postJSON(t, c.Base+"/v2/repository/models/m/load", fakeLoad("x", 0)); code != http.StatusOK {
		t.Fatalf("load: %d %s", code, body)
	}
	inferred := make(chan error, 1)
	go func() {
		_, err := c.PostREST("m", oip.InferRequest{}, twoRows, false)
		inferred <- err
	}()
	<-started
	unloaded := make(chan int, 1)
	go func() {
		code, _ := postJSON(t, c.Base+"/v2/repository/models/m/unload", nil)
		unloaded <- code
	}()
	for len(index(t, c.Base)) != 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := c.PostREST("m", oip.InferRequest{}, twoRows, false); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a new request during the unload: %v, want 404", err)
	}
	time.Sleep(20 * time.Millisecond)
	if m.closed.Load() {
		t.Fatal("the model was closed with a request in flight")
	}
	close(release)
	if err := <-inferred; err != nil {
		t.Errorf("the request in flight failed: %v", err)
	}
	if code := <-unloaded; code != http.StatusOK || !m.closed.Load() {
		t.Errorf("unload: %d, closed %v", code, m.closed.Load())
	}
}

func TestPoolFailedLoad(t *testing.T) {
	l := &fakeLoader{}
	s := NewPool("p", Options{}, PoolOptions{Load: l.load})
	c := servertest.Start(t, s)
	code, body := postJSON(t, c.Base+"/v2/repository/models/m/load", fakeLoad("fail", 0))
	if code != http.StatusBadRequest || !strings.Contains(string(body), "the file is corrupt") {
		t.Fatalf("failed load: %d %s, want 400 with the reason", code, body)
	}
	idx := index(t, c.Base)
	if len(idx) != 1 || idx[0].State != pool.Unavailable || !strings.Contains(idx[0].Reason, "the file is corrupt") {
		t.Fatalf("index %+v, want m UNAVAILABLE with the reason", idx)
	}
	if _, err := c.PostREST("m", oip.InferRequest{}, twoRows, false); err == nil || !strings.Contains(err.Error(), "status 503") || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("infer on a failed model: %v, want 503 with the reason", err)
	}
	// Loading again tries again.
	if code, body := postJSON(t, c.Base+"/v2/repository/models/m/load", fakeLoad("10", 0)); code != http.StatusOK {
		t.Fatalf("second load: %d %s", code, body)
	}
	if _, err := c.PostREST("m", oip.InferRequest{}, twoRows, false); err != nil {
		t.Errorf("infer after a successful load: %v", err)
	}
}

func TestPoolBadRequests(t *testing.T) {
	l := &fakeLoader{}
	s := NewPool("p", Options{}, PoolOptions{Engine: "trees", Load: l.load})
	c := servertest.Start(t, s)
	if code, body := postJSON(t, c.Base+"/v2/repository/models/a/load", fakeLoad("10", 0)); code != http.StatusOK {
		t.Fatalf("load a: %d %s", code, body)
	}
	tests := []struct {
		name string
		path string
		body any
		code int
		want string
	}{
		{"no body", "models/b/load", nil, 400, "give the artifact in the body"},
		{"not JSON", "models/b/load", "{", 400, "not valid"},
		{"unknown parameter", "models/b/load", `{"parameters":{"model":"1","enigne":"trees"}}`, 400, `unknown field \"enigne\"`},
		{"negative size", "models/b/load", `{"parameters":{"model":"1","bytes":-5}}`, 400, "bytes is -5"},
		{"bad name", "models/Bad_Name/load", fakeLoad("1", 0), 400, "not valid"},
		{"other engine", "models/b/load", `{"parameters":{"model":"1","engine":"onnx"}}`, 409, "runs engine trees"},
		{"another model under a loaded name", "models/a/load", fakeLoad("20", 0), 409, "unload it before loading 20"},
		{"unload unknown", "models/zz/unload", nil, 404, "not loaded"},
		{"unknown verb", "models/a/reload", nil, 404, "load|unload"},
		{"unknown endpoint", "nothing", nil, 404, "load|unload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := postJSON(t, c.Base+"/v2/repository/"+tt.path, tt.body)
			if code != tt.code || !strings.Contains(string(body), tt.want) {
				t.Errorf("POST %s = %d %s, want %d with %q", tt.path, code, body, tt.code, tt.want)
			}
		})
	}
	if got := l.loads.Load(); got != 1 {
		t.Errorf("the loader ran %d times, want once (for a)", got)
	}
	// Loading a again from the same artifact answers at once.
	if code, _ := postJSON(t, c.Base+"/v2/repository/models/a/load", fakeLoad("10", 0)); code != http.StatusOK || l.loads.Load() != 1 {
		t.Errorf("reload of a loaded model: %d, %d loads", code, l.loads.Load())
	}
}

// TestPoolInferRequest checks which requests the pool's fasthttp handler
// answers natively.
func TestPoolInferRequest(t *testing.T) {
	s := NewPool("p", Options{Secret: "s3"}, PoolOptions{Load: (&fakeLoader{}).load})
	r := s.newREST()
	tests := []struct {
		method, path, secret string
		name, version        string
		ok                   bool
	}{
		{"POST", "/v2/models/m/infer", "s3", "m", "", true},
		{"POST", "/v2/models/m/versions/3/infer", "s3", "m", "3", true},
		{"POST", "/v2/models/m/infer", "wrong", "", "", false},
		{"GET", "/v2/models/m/infer", "s3", "", "", false},
		{"POST", "/v2/models/m%2Fx/infer", "s3", "", "", false},
		{"POST", "/v2/models/m/versions//infer", "s3", "", "", false},
		{"POST", "/v2/models/m/versions/1/2/infer", "s3", "", "", false},
		{"POST", "/v2/models//infer", "s3", "", "", false},
		{"POST", "/v2/models/m", "s3", "", "", false},
		{"POST", "/v2/repository/index", "s3", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod(tt.method)
			ctx.Request.SetRequestURI(tt.path)
			ctx.Request.Header.Set("Ebb-Replica-Secret", tt.secret)
			name, version, ok := r.poolInferRequest(&ctx)
			if string(name) != tt.name || version != tt.version || ok != tt.ok {
				t.Errorf("poolInferRequest = %q, %q, %v; want %q, %q, %v", name, version, ok, tt.name, tt.version, tt.ok)
			}
		})
	}
}
