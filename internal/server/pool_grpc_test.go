package server

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/server/servertest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// parallel runs fn(i) for i in [0, n) on workers goroutines and returns
// the first error.
func parallel(n, workers int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// grpcPooled is one model of TestPoolGRPCManyModels.
type grpcPooled struct {
	name, version, path string
	seed                uint64
}

// answers returns what the pool's replica answers for p's rows over gRPC
// (typed and raw contents) and REST, and what the model file predicts in
// this process, each as text.
func (p grpcPooled) answers(c *servertest.Client) (map[string]string, error) {
	in := rows(p.seed, 4)
	m, err := trees.Load(p.path)
	if err != nil {
		return nil, err
	}
	want, err := m.Predict(context.Background(), []oip.Tensor{in})
	if err != nil {
		return nil, err
	}
	out := map[string]string{"in process": fmt.Sprint(want[0].Data)}
	for _, raw := range []bool{false, true} {
		req := &oipgrpc.ModelInferRequest{ModelName: p.name, ModelVersion: p.version, Id: "req-" + p.name}
		if err := oipgrpc.SetInputs(req, []oip.Tensor{in}, raw); err != nil {
			return nil, err
		}
		resp, err := c.GRPC.ModelInfer(context.Background(), req)
		if err != nil {
			return nil, fmt.Errorf("%s: gRPC ModelInfer (raw %v): %w", p.name, raw, err)
		}
		if resp.ModelName != p.name || resp.Id != req.Id {
			return nil, fmt.Errorf("%s: gRPC answered as model %q, id %q", p.name, resp.ModelName, resp.Id)
		}
		got, err := oipgrpc.OutputTensors(resp)
		if err != nil {
			return nil, err
		}
		g, err := got[0].Float32s()
		if err != nil {
			return nil, err
		}
		out[fmt.Sprintf("gRPC raw %v", raw)] = fmt.Sprint(g)
	}
	resp, err := c.PostREST(p.name, oip.InferRequest{}, []oip.Tensor{in}, false)
	if err != nil {
		return nil, fmt.Errorf("%s: REST: %w", p.name, err)
	}
	g, err := resp.Outputs[0].Float32s()
	if err != nil {
		return nil, err
	}
	out["REST"] = fmt.Sprint(g)
	return out, nil
}

// check compares every answer for p with the model's own prediction.
func (p grpcPooled) check(c *servertest.Client) error {
	got, err := p.answers(c)
	if err != nil {
		return err
	}
	want := got["in process"]
	for how, g := range got {
		if g != want {
			return fmt.Errorf("%s over %s predicted %s, the model itself %s", p.name, how, g, want)
		}
	}
	return nil
}

// TestPoolGRPCManyModels loads a thousand tiny XGBoost models into one
// pool replica and calls every one over gRPC, with typed and raw tensor
// contents: each answer must equal REST's and the model's own in-process
// prediction, and gRPC metadata and readiness must name the model (and
// its registry version for those loaded with one). Then a third of the
// models are unloaded while gRPC calls for the others run: those answer
// NotFound over gRPC, the rest keep answering correctly, and the unloaded
// ones answer again once loaded again.
func TestPoolGRPCManyModels(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	dir := t.TempDir()
	s := NewPool("grpc-pool", Options{}, PoolOptions{Budget: 1 << 30, Engine: "trees", Load: (&treesLoader{}).load, ServingBytes: DefaultServingBytes})
	c := servertest.Start(t, s)

	models := make([]grpcPooled, n)
	for i := range models {
		p := grpcPooled{name: fmt.Sprintf("g-%04d", i), path: tinyModel(t, dir, uint64(i)), seed: uint64(i)}
		if i%7 == 0 {
			p.version = fmt.Sprint(i%5 + 1)
		}
		models[i] = p
	}
	load := func(p grpcPooled) error {
		params := map[string]any{"model": p.path, "engine": "trees"}
		if p.version != "" {
			params["model-version"] = p.name + ":" + p.version
		}
		if code, body := postJSON(t, c.Base+"/v2/repository/models/"+p.name+"/load", map[string]any{"parameters": params}); code != http.StatusOK {
			return fmt.Errorf("load %s: %d %s", p.name, code, body)
		}
		return nil
	}
	if err := parallel(n, 4, func(i int) error { return load(models[i]) }); err != nil {
		t.Fatal(err)
	}
	if got := len(index(t, c.Base)); got != n {
		t.Fatalf("index has %d models, want %d", got, n)
	}

	ctx := context.Background()
	if err := parallel(n, 8, func(i int) error {
		p := models[i]
		if err := p.check(c); err != nil {
			return err
		}
		md, err := c.GRPC.ModelMetadata(ctx, &oipgrpc.ModelMetadataRequest{Name: p.name, Version: p.version})
		if err != nil || md.Name != p.name || len(md.Inputs) != 1 {
			return fmt.Errorf("%s: gRPC ModelMetadata = %v, %v", p.name, md, err)
		}
		if p.version != "" && (len(md.Versions) != 1 || md.Versions[0] != p.version) {
			return fmt.Errorf("%s: gRPC ModelMetadata versions %v, want [%s]", p.name, md.Versions, p.version)
		}
		r, err := c.GRPC.ModelReady(ctx, &oipgrpc.ModelReadyRequest{Name: p.name, Version: p.version})
		if err != nil || !r.Ready {
			return fmt.Errorf("%s: gRPC ModelReady = %v, %v", p.name, r, err)
		}
		if p.version != "" {
			_, err := c.GRPC.ModelInfer(ctx, &oipgrpc.ModelInferRequest{ModelName: p.name, ModelVersion: "99"})
			if status.Code(err) != codes.NotFound {
				return fmt.Errorf("%s: gRPC ModelInfer of version 99: %v, want NotFound", p.name, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Unload every third model while gRPC calls for the others run.
	gone := func(i int) bool { return i%3 == 0 }
	var wg sync.WaitGroup
	callErr := make(chan error, 1)
	wg.Go(func() {
		if err := parallel(n, 4, func(i int) error {
			if gone(i) {
				return nil
			}
			return models[i].check(c)
		}); err != nil {
			callErr <- err
		}
	})
	if err := parallel(n, 2, func(i int) error {
		if !gone(i) {
			return nil
		}
		if code, body := postJSON(t, c.Base+"/v2/repository/models/"+models[i].name+"/unload", nil); code != http.StatusOK {
			return fmt.Errorf("unload %s: %d %s", models[i].name, code, body)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	select {
	case err := <-callErr:
		t.Fatalf("while unloading others: %v", err)
	default:
	}

	if err := parallel(n, 8, func(i int) error {
		p := models[i]
		if !gone(i) {
			return p.check(c)
		}
		_, err := c.InferGRPC(p.name, []oip.Tensor{rows(p.seed, 1)}, nil, false)
		if status.Code(err) != codes.NotFound {
			return fmt.Errorf("%s unloaded: gRPC ModelInfer = %v, want NotFound", p.name, err)
		}
		if _, err := c.GRPC.ModelReady(ctx, &oipgrpc.ModelReadyRequest{Name: p.name}); status.Code(err) != codes.NotFound {
			return fmt.Errorf("%s unloaded: gRPC ModelReady = %v, want NotFound", p.name, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, want := len(index(t, c.Base)), n-(n+2)/3; got != want {
		t.Fatalf("index has %d models after the unloads, want %d", got, want)
	}

	// Loaded again, they answer again.
	for i := 0; i < n; i += 30 {
		if err := load(models[i]); err != nil {
			t.Fatal(err)
		}
		if err := models[i].check(c); err != nil {
			t.Fatalf("loaded again: %v", err)
		}
	}
}
