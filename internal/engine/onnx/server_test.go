package onnx_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/serving"
)

const exampleDir = "../../../examples/mlp-onnx/"

// serveExample loads examples/mlp-onnx into the replica server as deployment
// "mlp" and serves it on 127.0.0.1.
func serveExample(t *testing.T, opts server.Options) (*server.Server, *httptest.Server) {
	t.Helper()
	if err := onnx.Available(""); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	m, err := onnx.Load(exampleDir+"model.onnx", onnx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	s := server.New("mlp", m, opts)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

// exampleGolden returns golden.json's first n rows of input and outputs.
func exampleGolden(t *testing.T, n int) (input []float32, outputs map[string][]float32) {
	t.Helper()
	data, err := os.ReadFile(exampleDir + "golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Inputs, Outputs map[string]struct {
			Shape []int
			Data  []float64
		}
	}
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	take := func(name string, shape []int, d []float64) []float32 {
		if len(shape) != 2 || shape[0] < n {
			t.Fatalf("golden.json %s has shape %v, want at least %d rows", name, shape, n)
		}
		out := make([]float32, n*shape[1])
		for i := range out {
			out[i] = float32(d[i])
		}
		return out
	}
	in := g.Inputs["input"]
	outputs = map[string][]float32{}
	for name, o := range g.Outputs {
		outputs[name] = take(name, o.Shape, o.Data)
	}
	return take("input", in.Shape, in.Data), outputs
}

func post(t *testing.T, url string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	return resp.StatusCode, b
}

// checkInfer compares an infer response's outputs with PyTorch's.
func checkInfer(t *testing.T, body []byte, rows int, want map[string][]float32) {
	t.Helper()
	var resp struct {
		ModelName string `json:"model_name"`
		Outputs   []struct {
			Name     string    `json:"name"`
			Datatype string    `json:"datatype"`
			Shape    []int64   `json:"shape"`
			Data     []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Errorf("infer response %s: %v", body, err)
		return
	}
	if resp.ModelName != "mlp" || len(resp.Outputs) != len(want) {
		t.Errorf("infer response names model %q with %d outputs; want mlp with %d", resp.ModelName, len(resp.Outputs), len(want))
		return
	}
	for _, o := range resp.Outputs {
		if o.Datatype != oip.FP32 || !cmp.Equal(o.Shape, []int64{int64(rows), 10}) {
			t.Errorf("output %q is %s %v, want FP32 [%d 10]", o.Name, o.Datatype, o.Shape, rows)
		}
		w := want[o.Name]
		if len(o.Data) != len(w) {
			t.Errorf("output %q has %d values, want %d", o.Name, len(o.Data), len(w))
			continue
		}
		for i := range w {
			d := math.Abs(float64(w[i]) - float64(o.Data[i]))
			if d > 1e-5*math.Abs(float64(w[i])) && d > 1e-7 {
				t.Errorf("output %q value %d = %v, PyTorch gave %v", o.Name, i, o.Data[i], w[i])
			}
		}
	}
}

// TestReplicaServer serves the example through the real replica server and
// checks metadata, the example's request.json against PyTorch's outputs,
// and a bad request.
func TestReplicaServer(t *testing.T) {
	_, ts := serveExample(t, server.Options{})

	resp, err := http.Get(ts.URL + "/v2/models/mlp")
	if err != nil {
		t.Fatal(err)
	}
	var meta oip.ModelMetadata
	err = json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	wantMeta := oip.ModelMetadata{
		Name: "mlp", Platform: "onnxruntime_onnx",
		Inputs: []oip.TensorMetadata{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 64}}},
		Outputs: []oip.TensorMetadata{
			{Name: "logits", Datatype: oip.FP32, Shape: []int64{-1, 10}},
			{Name: "probabilities", Datatype: oip.FP32, Shape: []int64{-1, 10}},
		},
	}
	if diff := cmp.Diff(wantMeta, meta); diff != "" {
		t.Errorf("GET /v2/models/mlp (-want +got):\n%s", diff)
	}

	req, err := os.ReadFile(exampleDir + "request.json")
	if err != nil {
		t.Fatal(err)
	}
	_, want := exampleGolden(t, 2) // request.json holds golden.json's first 2 rows
	status, body := post(t, ts.URL+"/v2/models/mlp/infer", req)
	if status != http.StatusOK {
		t.Fatalf("POST request.json: status %d: %s", status, body)
	}
	checkInfer(t, body, 2, want)

	bad := `{"inputs":[{"name":"input","shape":[1,63],"datatype":"FP32","data":[` + strings.Repeat("0,", 62) + `0]}]}`
	status, body = post(t, ts.URL+"/v2/models/mlp/infer", []byte(bad))
	if status != http.StatusBadRequest || !strings.Contains(string(body), "[-1,64]") {
		t.Errorf("POST with 63 features: status %d %s; want 400 naming the expected shape [-1,64]", status, body)
	}
}

// TestReplicaServerBatching sends the golden rows one per request from
// concurrent clients through a server that batches them, and checks every
// answer against PyTorch's row.
func TestReplicaServerBatching(t *testing.T) {
	s, ts := serveExample(t, server.Options{Batching: &serving.Batching{
		MaxBatchSize: 8, MaxQueueDelay: serving.D(5 * time.Millisecond),
	}})
	if !s.Batching() {
		t.Fatal("the server does not batch the example model; its metadata should allow it (dimension 0 is -1 everywhere)")
	}
	const rows = 8
	input, outputs := exampleGolden(t, rows)
	var wg sync.WaitGroup
	for r := range rows {
		wg.Go(func() {
			data, _ := json.Marshal(input[r*64 : (r+1)*64])
			body := fmt.Sprintf(`{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":%s}]}`, data)
			status, resp := post(t, ts.URL+"/v2/models/mlp/infer", []byte(body))
			if status != http.StatusOK {
				t.Errorf("row %d: status %d: %s", r, status, resp)
				return
			}
			want := map[string][]float32{}
			for name, o := range outputs {
				want[name] = o[r*10 : (r+1)*10]
			}
			checkInfer(t, resp, 1, want)
		})
	}
	wg.Wait()
}
