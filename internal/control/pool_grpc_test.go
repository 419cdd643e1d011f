package control

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/serving"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// grpcGateway serves the gateway's OIP v2 gRPC plane over f's routes, with
// an activator of its own that wakes f's loop, and returns a client of it.
func (f *poolFixture) grpcGateway(t *testing.T) oipgrpc.GRPCInferenceServiceClient {
	t.Helper()
	act := activator.New(f.routes, f.ctl, activator.Options{Timeout: 30 * time.Second, MaxQueue: 100000})
	g := gateway.NewGRPC(f.routes, act, gateway.Options{HoldTimeout: 30 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- g.Serve(ctx, ln, 5*time.Second) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("gRPC gateway: %v", err)
		}
	})
	return oipgrpc.NewGRPCInferenceServiceClient(cc)
}

// checkGRPC asks the gateway's gRPC plane for model's prediction of rows
// from seed, with raw or typed contents, and compares it with the model
// file's own and with what the REST gateway answers. It returns the
// replica that answered.
func (f *poolFixture) checkGRPC(c oipgrpc.GRPCInferenceServiceClient, model, path string, seed uint64, raw bool) (string, error) {
	in := poolRows(seed, 3)
	m, err := trees.Load(path)
	if err != nil {
		return "", err
	}
	want, err := m.Predict(context.Background(), []oip.Tensor{in})
	if err != nil {
		return "", err
	}
	req := &oipgrpc.ModelInferRequest{ModelName: model}
	if err := oipgrpc.SetInputs(req, []oip.Tensor{in}, raw); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var hdr metadata.MD
	resp, err := c.ModelInfer(ctx, req, grpc.Header(&hdr))
	if err != nil {
		return "", fmt.Errorf("model %s over gRPC: %w", model, err)
	}
	out, err := oipgrpc.OutputTensors(resp)
	if err != nil {
		return "", err
	}
	got, err := out[0].Float32s()
	if err != nil {
		return "", err
	}
	w := want[0].Data.([]float32)
	if resp.ModelName != model || len(got) != len(w) {
		return "", fmt.Errorf("model %s over gRPC answered %v as %q, want %v", model, got, resp.ModelName, w)
	}
	for i := range w {
		if math.Abs(float64(got[i]-w[i])) > 1e-5 {
			return "", fmt.Errorf("model %s over gRPC answered %v, want %v", model, got, w)
		}
	}
	rest, err := f.gw.PostREST(model, oip.InferRequest{}, []oip.Tensor{in}, false)
	if err != nil {
		return "", fmt.Errorf("model %s over REST: %w", model, err)
	}
	if r, _ := rest.Outputs[0].Float32s(); fmt.Sprint(r) != fmt.Sprint(got) {
		return "", fmt.Errorf("model %s: gRPC answered %v, REST %v", model, got, r)
	}
	var replica string
	if v := hdr.Get("ebb-replica"); len(v) > 0 {
		replica = v[0]
	}
	return replica, nil
}

// TestPoolGRPCGateway deploys 120 models into a pool of 3 replicas at
// zero and calls each through the gateway's gRPC plane: the first call
// for each is held while the pool scales up and the model loads, and
// every answer, cold and warm, typed and raw, is the model's own and
// equals the REST gateway's; the replicas that answer are those the
// model's status names.
func TestPoolGRPCGateway(t *testing.T) {
	const n = 120
	f := newPoolFixture(t, []serving.Pool{poolOf("rpc", serving.PoolSpec{Engine: "trees", MemoryBudget: "64MiB", MaxReplicas: 3, ShardSize: 2})})
	c := f.grpcGateway(t)
	paths := make([]string, n)
	for i := range n {
		paths[i] = tinyPoolModel(t, f.dir, uint64(500+i))
		f.deploy(pooled(fmt.Sprintf("r-%03d", i), paths[i], "rpc"))
	}
	for round := range 2 { // cold, then warm
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := range 4 {
			wg.Go(func() {
				for i := w; i < n; i += 4 {
					name := fmt.Sprintf("r-%03d", i)
					rep, err := f.checkGRPC(c, name, paths[i], uint64(round*n+i), (i+round)%2 == 0)
					if err != nil {
						errs <- fmt.Errorf("round %d: %w", round, err)
						return
					}
					if rep == "" {
						errs <- fmt.Errorf("round %d: %s: no ebb-replica header", round, name)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	f.until("every model loaded", func() bool {
		ps := f.ctl.PoolStatus("rpc")
		return ps.Models == n && ps.Loaded == n
	})
	// A warm call is answered by a replica the model's status lists.
	for i := 0; i < n; i += 10 {
		name := fmt.Sprintf("r-%03d", i)
		rep, err := f.checkGRPC(c, name, paths[i], 9, false)
		if err != nil {
			t.Fatal(err)
		}
		st := f.ctl.Status(name)
		found := false
		for _, r := range st.ReplicaStatuses {
			found = found || r.ID == rep
		}
		if !found {
			t.Errorf("%s was answered by replica %s, not one of its status's %+v", name, rep, st.ReplicaStatuses)
		}
	}
	md, err := c.ModelMetadata(context.Background(), &oipgrpc.ModelMetadataRequest{Name: "r-007"})
	if err != nil || md.Name != "r-007" || len(md.Inputs) != 1 {
		t.Errorf("gRPC ModelMetadata(r-007) = %v, %v", md, err)
	}
}
