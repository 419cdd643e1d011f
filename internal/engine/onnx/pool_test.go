package onnx_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/server"
)

// TestPool loads the example twice into a pool's replica server, under two
// names, and checks their answers, their measured memory (the growth of
// the resident set: ONNX Runtime allocates outside Go's heap; Init first,
// so that the runtime's own is not counted) and that an unload leaves the
// other model serving.
func TestPool(t *testing.T) {
	if err := onnx.Available(""); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	if err := onnx.Init(""); err != nil {
		t.Fatal(err)
	}
	s := server.NewPool("onnx-pool", server.Options{}, server.PoolOptions{Engine: "onnx", Budget: 1 << 30,
		Load: func(_ context.Context, req server.LoadRequest) (server.LoadedModel, error) {
			m, err := onnx.Load(req.Model, onnx.Options{})
			return server.LoadedModel{Model: m}, err
		}})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)

	for _, name := range []string{"mlp", "mlp-copy"} {
		code, body := post(t, ts.URL+"/v2/repository/models/"+name+"/load", []byte(`{"parameters":{"model":"`+exampleDir+`model.onnx"}}`))
		if code != 200 {
			t.Fatalf("load %s: %d %s", name, code, body)
		}
		var st server.ModelStatus
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if file := fileSize(t, exampleDir+"model.onnx"); st.State != "READY" || st.EngineBytes != 0 || st.Bytes != max(st.RSSDeltaBytes, file) {
			t.Errorf("load %s: %+v, want READY counted at its RSS growth, at least its file's %d bytes", name, st, file)
		}
		t.Logf("%s: %d bytes of resident memory (the file has %d)", name, st.Bytes, fileSize(t, exampleDir+"model.onnx"))
	}
	input, want := exampleGolden(t, 2)
	req, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "input", "datatype": "FP32", "shape": []int{2, len(input) / 2}, "data": input}}})
	code, body := post(t, ts.URL+"/v2/models/mlp/infer", req)
	if code != 200 {
		t.Fatalf("infer: %d %s", code, body)
	}
	checkInfer(t, body, 2, want)

	if code, body := post(t, ts.URL+"/v2/repository/models/mlp-copy/unload", nil); code != 200 {
		t.Fatalf("unload: %d %s", code, body)
	}
	code, body = post(t, ts.URL+"/v2/models/mlp-copy/infer", req)
	if code != 404 {
		t.Errorf("infer on the unloaded model: %d %s, want 404", code, body)
	}
	code, body = post(t, ts.URL+"/v2/models/mlp/infer", req)
	if code != 200 {
		t.Fatalf("infer after the other's unload: %d %s", code, body)
	}
	checkInfer(t, body, 2, want)
	if info := s.Info().Pool; info.Models != 1 {
		t.Errorf("pool info %+v, want 1 model", info)
	}
}

func fileSize(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
