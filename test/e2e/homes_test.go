package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/serving"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// home is one place ebb runs, reached the way a user reaches it: the admin
// API and OIP v2 REST at base (ebb up's address, or the chart's gateway
// Service, which passes /v1 to the operator), OIP v2 gRPC at grpcAddr, and
// the ebb CLI with --server base.
type home struct {
	t        *testing.T
	name     string
	base     string
	grpcAddr string
	// token is sent to the admin API (raw HTTP and the CLI's --token);
	// "" where the home has auth off.
	token string
	// replicas lists the deployment's replica processes or pods as the
	// home knows them (for "nothing started" checks); nil: use the
	// deployment's status.
	replicas func(deployment string) int
	// predictions reads the home's prediction log (predlog_test.go); nil:
	// the step is skipped.
	predictions predictionRecords
}

// cli runs the ebb CLI against h and returns its output; a failure fails
// the test unless allowed.
func (h *home) cli(args ...string) string {
	h.t.Helper()
	out, err := h.try(args...)
	if err != nil {
		h.t.Fatalf("[%s] ebb %s: %v\n%s", h.name, strings.Join(args, " "), err, out)
	}
	return out
}

func (h *home) try(args ...string) (string, error) {
	args = append(args, "--server", h.base)
	if h.token != "" {
		args = append(args, "--token", h.token)
	}
	cmd := exec.Command(ebbBin, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// do sends a JSON request to h and decodes the answer into out.
func (h *home) do(method, path string, body, out any) (int, string) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.base+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("[%s] %s %s: %v", h.name, method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			h.t.Fatalf("[%s] %s %s: decode %s: %v", h.name, method, path, b, err)
		}
	}
	return resp.StatusCode, string(b)
}

func (h *home) deployment(name string) serving.Deployment {
	h.t.Helper()
	var d serving.Deployment
	if code, body := h.do(http.MethodGet, "/v1/deployments/"+name, nil, &d); code != http.StatusOK {
		h.t.Fatalf("[%s] GET deployment %s: %d %s", h.name, name, code, body)
	}
	return d
}

func (h *home) waitStatus(name string, timeout time.Duration, what string, cond func(serving.Status) bool) serving.Status {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := h.deployment(name).Status
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("[%s] deployment %s: %s not reached within %s; status %+v", h.name, name, what, timeout, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stays checks that the deployment runs no replica for d.
func (h *home) staysAtZero(name string, d time.Duration, after string) {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		n := int(h.deployment(name).Status.Replicas)
		if h.replicas != nil {
			n = max(n, h.replicas(name))
		}
		if n != 0 {
			h.t.Fatalf("[%s] %s started %d replica(s) of %s; it must not wake the deployment", h.name, after, n, name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitKnown waits until the gateway routes deployment name: right after a
// create, a cluster gateway may not have seen the ModelDeployment yet and
// rightly answers 404. Readiness never wakes the deployment.
func (h *home) waitKnown(name string) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := h.do(http.MethodGet, "/v2/models/"+name+"/ready", nil, nil)
		if code != http.StatusNotFound {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("[%s] the gateway still answers 404 for %s 30s after it was created: %s", h.name, name, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// inferRow asks for one prediction at path (/v2/models/diabetes[/versions/v]/infer).
func (h *home) inferRow(ctx context.Context, path string, row []float64) (float64, int, string) {
	pred, code, body, _ := h.inferRowWith(ctx, path, row, nil)
	return pred, code, body
}

// inferRowWith is inferRow with extra request headers; it also returns the
// Ebb-Version header of the answer (the traffic target that served it).
func (h *home) inferRowWith(ctx context.Context, path string, row []float64, header map[string]string) (pred float64, code int, body, tag string) {
	req := oip.InferRequest{Inputs: []oip.RequestInput{{Name: "input", Shape: []int64{1, int64(len(row))}, Datatype: oip.FP64}}}
	req.Inputs[0].Data, _ = json.Marshal(row)
	reqBody, _ := json.Marshal(req)
	hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.base+path, bytes.NewReader(reqBody))
	hr.Header.Set("Content-Type", "application/json")
	if h.token != "" {
		hr.Header.Set("Authorization", "Bearer "+h.token)
	}
	for k, v := range header {
		hr.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return 0, 0, err.Error(), ""
	}
	defer resp.Body.Close()
	pred, code, body = decodePrediction(resp)
	return pred, code, body, resp.Header.Get("Ebb-Version")
}

// decodePrediction reads the one prediction of an OIP v2 answer.
func decodePrediction(resp *http.Response) (float64, int, string) {
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, resp.StatusCode, string(b)
	}
	var out struct {
		Outputs []struct {
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(b, &out); err != nil || len(out.Outputs) == 0 {
		return 0, resp.StatusCode, "undecodable answer: " + string(b)
	}
	preds := out.Outputs[0].Data
	if len(preds) != 1 {
		return 0, resp.StatusCode, "undecodable prediction: " + string(b)
	}
	return preds[0], resp.StatusCode, ""
}

// runHome is the one end-to-end scenario both homes must pass.
func runHome(t *testing.T, h *home) {
	v1 := loadGoldenFile(t, "golden.json")
	v2 := loadGoldenFile(t, "golden-v2.json")
	var rows []int // rows whose predictions tell the versions apart
	for i := range v1.Rows {
		if math.Abs(v1.Predictions[i]-v2.Predictions[i]) > 0.01 {
			rows = append(rows, i)
		}
	}
	model1, _ := filepath.Abs("../../examples/diabetes/model.json")
	model2, _ := filepath.Abs("../../examples/diabetes/model-v2.json")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// Push a model and deploy model@alias.
	h.cli("models", "push", model1, "--name", "diabetes", "--alias", "champion")
	d := serving.Deployment{Name: "diabetes", Spec: serving.Spec{Model: "diabetes@champion",
		Scaling: serving.Scaling{MinReplicas: 0, MaxReplicas: 2, ScaleToZeroAfter: serving.D(4 * time.Second)}}}
	if code, body := h.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("[%s] create deployment: %d %s", h.name, code, body)
	}
	h.waitKnown("diabetes")

	// Metadata and readiness at zero never wake the deployment.
	time.Sleep(time.Second)
	// Metadata comes from the registry version's signature; ready is true
	// because a request would start a replica.
	for path, want := range map[string]string{
		"/v2/models/diabetes":       `"name":"input"`,
		"/v2/models/diabetes/ready": `"ready":true`,
	} {
		code, body := h.do(http.MethodGet, path, nil, nil)
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("[%s] GET %s at zero: %d %s, want 200 with %s", h.name, path, code, strings.TrimSpace(body), want)
		}
	}
	h.staysAtZero("diabetes", 2*time.Second, "GET of metadata and ready at zero")

	// Wake on the first request; REST and gRPC answer.
	k := rows[0]
	if got, code, body := h.inferRow(ctx, "/v2/models/diabetes/infer", v1.Rows[k]); code != http.StatusOK || !near(got, v1.Predictions[k]) {
		t.Fatalf("[%s] first request: %d %s (got %v want %v)", h.name, code, body, got, v1.Predictions[k])
	}
	st := h.waitStatus("diabetes", 30*time.Second, "one ready replica on version 1", func(st serving.Status) bool {
		return st.ReadyReplicas >= 1 && st.ModelVersion == "diabetes:1"
	})
	fetch := artifactPhase(st)
	if fetch == nil || fetch.Bytes == 0 {
		t.Errorf("[%s] no artifact_fetched phase with bytes in the first replica's cold start: %+v", h.name, st.ReplicaStatuses)
	}
	grpcInfer(t, h, v1.Rows[k], v1.Predictions[k])

	// Versioned paths route only to that version.
	if got, code, body := h.inferRow(ctx, "/v2/models/diabetes/versions/1/infer", v1.Rows[k]); code != http.StatusOK || !near(got, v1.Predictions[k]) {
		t.Errorf("[%s] /versions/1/infer: %d %s", h.name, code, body)
	}
	if _, code, body := h.inferRow(ctx, "/v2/models/diabetes/versions/999/infer", v1.Rows[k]); code != http.StatusNotFound {
		t.Errorf("[%s] /versions/999/infer: %d %s, want 404", h.name, code, body)
	}

	// A second replica on the same host or node finds the artifact in the
	// shared cache.
	h.cli("scale", "diabetes", "--replicas", "2")
	st = h.waitStatus("diabetes", 60*time.Second, "two ready replicas", func(st serving.Status) bool { return st.ReadyReplicas == 2 })
	hits := 0
	for _, r := range st.ReplicaStatuses {
		for _, p := range r.ColdStart {
			if p.Name != serving.PhaseArtifactFetched || p.CacheHit == nil {
				continue
			}
			which := "miss"
			if *p.CacheHit {
				hits++
				which = "hit"
			}
			figure(t, "artifact_fetched."+which+".ms", float64(p.Duration.Microseconds())/1000, "ms")
			figure(t, "artifact_fetched."+which+".bytes", float64(p.Bytes), "bytes")
		}
	}
	t.Logf("[%s] cold starts with two replicas: %s", h.name, phasesOf(st))
	if hits == 0 {
		t.Errorf("[%s] the second replica did not hit the artifact cache: %s", h.name, phasesOf(st))
	}
	h.cli("scale", "diabetes", "--auto")

	// Move the alias under load: no request fails, answers switch to v2.
	h.cli("models", "push", model2, "--name", "diabetes")
	var failed, sawV2 atomic.Int32
	stop := load(4, func(i int) {
		k := rows[i%len(rows)]
		got, code, body := h.inferRow(ctx, "/v2/models/diabetes/infer", v1.Rows[k])
		switch {
		case code != http.StatusOK:
			failed.Add(1)
			t.Errorf("[%s] request failed during the alias move: %d %s", h.name, code, body)
		case near(got, v2.Predictions[k]):
			sawV2.Add(1)
		}
	})
	time.Sleep(time.Second)
	moved := time.Now()
	h.cli("models", "alias", "diabetes", "champion", "2")
	h.waitStatus("diabetes", 90*time.Second, "serving version 2", func(st serving.Status) bool {
		return st.ModelVersion == "diabetes:2" && st.ReadyReplicas >= 1 && sawV2.Load() > 0
	})
	t.Logf("[%s] alias move: first v2 answer within %s", h.name, time.Since(moved).Round(time.Millisecond))
	time.Sleep(time.Second)
	sent := stop()
	t.Logf("[%s] alias move under load: %d requests, %d failed", h.name, sent, failed.Load())

	// History, describe and logs.
	if out := h.cli("rollout", "history", "diabetes"); !strings.Contains(out, "diabetes:1") || !strings.Contains(out, "diabetes:2") {
		t.Errorf("[%s] rollout history lacks a version:\n%s", h.name, out)
	}
	if out := h.cli("describe", "deployment", "diabetes"); !strings.Contains(out, "Scaled") {
		t.Errorf("[%s] describe shows no scale event:\n%s", h.name, out)
	}
	if out := h.cli("logs", "diabetes", "--tail", "50"); !strings.Contains(out, "ready") {
		t.Errorf("[%s] logs show no replica start:\n%s", h.name, out)
	}

	// Back to zero when idle, and awake again on a request.
	h.waitStatus("diabetes", 60*time.Second, "scaled to zero", func(st serving.Status) bool { return st.Replicas == 0 })
	if got, code, body := h.inferRow(ctx, "/v2/models/diabetes/infer", v1.Rows[k]); code != http.StatusOK || !near(got, v2.Predictions[k]) {
		t.Fatalf("[%s] request at zero: %d %s", h.name, code, body)
	}

	// Pinned to zero: a clear 503, and nothing wakes.
	h.cli("scale", "diabetes", "--replicas", "0")
	h.waitStatus("diabetes", 60*time.Second, "pinned at zero", func(st serving.Status) bool { return st.Replicas == 0 })
	if _, code, body := h.inferRow(ctx, "/v2/models/diabetes/infer", v1.Rows[k]); code != http.StatusServiceUnavailable || !strings.Contains(body, "scaled to zero") {
		t.Errorf("[%s] request pinned at zero: %d %s, want 503 saying it was scaled to zero", h.name, code, body)
	}
	h.staysAtZero("diabetes", 2*time.Second, "a request while pinned at zero")
	runAsyncPinned(t, h, "diabetes", v1.Rows[k]) // async_home_test.go
	h.cli("scale", "diabetes", "--auto")
	// In a cluster the gateways learn of the unpin from their watch, a
	// moment after the API answered (ebb up's API answers once its gateway
	// knows): allow them a few seconds.
	_, code, body := h.inferRow(ctx, "/v2/models/diabetes/infer", v1.Rows[k])
	for deadline := time.Now().Add(5 * time.Second); code == http.StatusServiceUnavailable && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		_, code, body = h.inferRow(ctx, "/v2/models/diabetes/infer", v1.Rows[k])
	}
	if code != http.StatusOK {
		t.Errorf("[%s] request after unpinning: %d %s", h.name, code, body)
	}
	runAsyncServed(t, h, "diabetes", v1.Rows[k], v2.Predictions[k])

	runSplit(t, h, v1, v2, rows)
	runUndo(t, h, v1, v2, rows)
	runShadow(t, h, v1, v2, rows)
	runRoutesAndCost(t, h, v1, v2, rows)
	runPools(t, h, v1, v2, rows) // pools_test.go
	runTenantLimits(t, h, v1, v2, rows)
	runDecisions(t, h)
	runDashboard(t, h) // ui_test.go
	runPredictionLog(t, h, v1, rows)
	runDrift(t, h) // drift_test.go

	// Delete.
	h.cli("delete", "deployment", "diabetes")
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, _ := h.do(http.MethodGet, "/v1/deployments/diabetes", nil, nil)
		n := 0
		if h.replicas != nil {
			n = h.replicas("diabetes")
		}
		if code == http.StatusNotFound && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("[%s] deployment still there 60s after delete: GET %d, %d replicas", h.name, code, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// load runs send in a loop on each of workers goroutines, passing each a
// running request number, until the returned stop is called; stop waits
// for them and returns how many requests were sent. send reports failures
// itself (t.Errorf), so a test that finishes without them had none.
func load(workers int, send func(i int)) (stop func() int32) {
	var sent atomic.Int32
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; ; i += workers {
				select {
				case <-done:
					return
				default:
				}
				send(i)
				sent.Add(1)
			}
		})
	}
	return func() int32 {
		close(done)
		wg.Wait()
		return sent.Load()
	}
}

func artifactPhase(st serving.Status) *serving.Phase {
	for _, r := range st.ReplicaStatuses {
		for i, p := range r.ColdStart {
			if p.Name == serving.PhaseArtifactFetched {
				return &r.ColdStart[i]
			}
		}
	}
	return nil
}

func phasesOf(st serving.Status) string {
	var b strings.Builder
	for _, r := range st.ReplicaStatuses {
		b.WriteString(r.ID + ":")
		for _, p := range r.ColdStart {
			b.WriteString(" " + p.Name + "=" + p.Duration.String())
			if p.Name == serving.PhaseArtifactFetched && p.CacheHit != nil {
				if *p.CacheHit {
					b.WriteString("(hit)")
				} else {
					b.WriteString("(miss)")
				}
			}
		}
		b.WriteString("; ")
	}
	return b.String()
}

func grpcInfer(t *testing.T, h *home, row []float64, want float64) {
	t.Helper()
	cc, err := grpc.NewClient(h.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if h.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+h.token)
	}
	c := oipgrpc.NewGRPCInferenceServiceClient(cc)
	req := &oipgrpc.ModelInferRequest{ModelName: "diabetes", Id: "e2e"}
	in := oip.Tensor{Name: "input", Datatype: oip.FP64, Shape: []int64{1, int64(len(row))}, Data: row}
	if err := oipgrpc.SetInputs(req, []oip.Tensor{in}, false); err != nil {
		t.Fatal(err)
	}
	resp, err := c.ModelInfer(ctx, req)
	if err != nil {
		t.Fatalf("[%s] gRPC infer: %v", h.name, err)
	}
	out, err := oipgrpc.OutputTensors(resp)
	if err != nil || len(out) == 0 {
		t.Fatalf("[%s] gRPC infer: outputs %+v %v", h.name, out, err)
	}
	got, err := out[0].Float32s()
	if err != nil || len(got) != 1 {
		t.Fatalf("[%s] gRPC infer: prediction %v %v", h.name, got, err)
	}
	if !near(float64(got[0]), want) {
		t.Errorf("[%s] gRPC prediction %v, want %v", h.name, got[0], want)
	}
}

// TestHomeUp runs the scenario against ebb up.
func TestHomeUp(t *testing.T) {
	dir := t.TempDir()
	grpcAddr := freeAddr(t)
	p := startEbb(t, freeAddr(t), dir, "--grpc-addr", grpcAddr, "--prediction-log-part-age", "1s")
	runHome(t, &home{t: t, name: "ebb up", base: p.base, grpcAddr: grpcAddr, token: p.token,
		predictions: predictionFiles(filepath.Join(dir, "predictions"))})
}
