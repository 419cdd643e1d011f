package replicacmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/server"
)

func TestPoolFlags(t *testing.T) {
	tests := []struct {
		name    string
		f       replicaFlags
		wantErr string
	}{
		{"trees", replicaFlags{pool: true, engine: "trees", memoryBudget: "512MiB"}, ""},
		{"onnx", replicaFlags{pool: true, engine: "onnx", memoryBudget: "2Gi"}, ""},
		{"no budget", replicaFlags{pool: true, engine: "trees"}, "--pool needs --memory-budget"},
		{"bad budget", replicaFlags{pool: true, engine: "trees", memoryBudget: "lots"}, "--memory-budget: size \"lots\""},
		{"zero budget", replicaFlags{pool: true, engine: "trees", memoryBudget: "0"}, "must be positive"},
		{"python", replicaFlags{pool: true, engine: "python", memoryBudget: "1Gi"}, ""},
		{"python with a class", replicaFlags{pool: true, engine: "python", memoryBudget: "1Gi", pythonClass: "m.py:M"}, "takes no --python-class"},
		{"http", replicaFlags{pool: true, engine: "http", memoryBudget: "1Gi"}, "engines trees, onnx and python, not http"},
		{"a model", replicaFlags{pool: true, engine: "trees", memoryBudget: "1Gi", model: "m.json"}, "takes no --model"},
		{"budget without pool", replicaFlags{engine: "trees", model: "m.json", memoryBudget: "1Gi"}, "--memory-budget needs --pool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.f
			f.deployment, f.addr, f.listenFD, f.socketFD, f.drainTimeout, f.maxBodyBytes = "p", "127.0.0.1:0", -1, -1, time.Second, 1<<20
			err := f.validate()
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("validate() = %v; want an error with %q", err, tt.wantErr)
			}
		})
	}
}

// TestPoolReplica runs the replica command with --pool, loads a trees
// model into it over REST and checks its answer and its index.
func TestPoolReplica(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	fd := giveFD(t, ln)
	ln.Close()
	cmd := New("replica", nil)
	cmd.SetArgs([]string{"--deployment", "tiny-pool", "--pool", "--engine", "trees", "--memory-budget", "64MiB", "--listen-fd", fmt.Sprint(fd)})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("replica: %v", err)
		}
	})

	post := func(path, body string) (int, string) {
		t.Helper()
		var resp *http.Response
		for range 100 { // the replica starts
			if resp, err = http.Post(base+path, "application/json", strings.NewReader(body)); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	path, err := filepath.Abs("../engine/trees/testdata/reg_squarederror.json")
	if err != nil {
		t.Fatal(err)
	}
	code, body := post("/v2/repository/models/reg/load", `{"parameters":{"model":"`+path+`"}}`)
	if code != http.StatusOK {
		t.Fatalf("load: %d %s", code, body)
	}
	var st server.ModelStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.State != "READY" || st.Bytes <= 0 {
		t.Fatalf("load answered %s (%v), want READY with its bytes", body, err)
	}

	m, err := trees.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	x := []float32{0.1, -0.2, 0.3, 1.5, -1}
	in := oip.Tensor{Name: trees.InputName, Datatype: oip.FP32, Shape: []int64{1, 5}, Data: x}
	want, err := m.Predict(context.Background(), []oip.Tensor{in})
	if err != nil {
		t.Fatal(err)
	}
	code, body = post("/v2/models/reg/infer", `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,5],"data":[0.1,-0.2,0.3,1.5,-1]}]}`)
	if code != http.StatusOK {
		t.Fatalf("infer: %d %s", code, body)
	}
	var resp struct {
		Outputs []struct {
			Data []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil || len(resp.Outputs) != 1 || fmt.Sprint(resp.Outputs[0].Data) != fmt.Sprint(want[0].Data) {
		t.Errorf("infer answered %s (%v), the model predicts %v", body, err, want[0].Data)
	}
	code, body = post("/v2/repository/models/other/load", `{"parameters":{"model":"`+path+`","engine":"onnx"}}`)
	if code != http.StatusConflict {
		t.Errorf("a load for another engine: %d %s, want 409", code, body)
	}
	code, body = post("/v2/repository/index", "")
	if code != http.StatusOK || !strings.Contains(body, `"name":"reg","state":"READY"`) {
		t.Errorf("index: %d %s", code, body)
	}
}
