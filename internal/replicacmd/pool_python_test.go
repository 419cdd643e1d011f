package replicacmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/engine/python"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/pool"
	"github.com/ebb-ml/ebb/internal/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// poolReplica is a replica command run in this process with --pool.
type poolReplica struct {
	base string
	// done receives what the command returned.
	done chan error
}

// startPoolReplica runs the replica command with --pool and args on a
// loopback port; the test's end stops it unless the test took its exit
// from done.
func startPoolReplica(t *testing.T, args ...string) *poolReplica {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &poolReplica{base: "http://" + ln.Addr().String(), done: make(chan error, 1)}
	fd := giveFD(t, ln)
	ln.Close()
	cmd := New("replica", nil)
	cmd.SetArgs(append([]string{"--pool", "--listen-fd", fmt.Sprint(fd)}, args...))
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("replica: %v", err)
			}
		default: // the test took its exit
		}
	})
	return r
}

// post posts body to the replica and returns the status and the body.
func (r *poolReplica) post(t *testing.T, path string, body any) (int, string) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	for range 250 { // the replica starts
		if resp, err = http.Post(r.base+path, "application/json", strings.NewReader(string(b))); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// TestPoolReplicaPython runs a pool replica of engine python with two
// workers: two models of one class load into them and answer over REST
// and gRPC, each with its own scale; the index counts the workers'
// memory; a class that does not opt in, a load without a class, another
// interpreter and a model over the budget are refused, each saying why;
// an unloaded model gives its memory back; and a worker that exits stops
// the replica with an error that says so.
func TestPoolReplicaPython(t *testing.T) {
	if out, err := exec.Command(python.DefaultInterpreter, "-c", "import sys").CombinedOutput(); err != nil {
		t.Skipf("no %s: %v %s", python.DefaultInterpreter, err, out)
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the workers' script
	r := startPoolReplica(t, "--deployment", "py-pool", "--engine", "python", "--python-workers", "2", "--memory-budget", "64MiB")
	class, err := filepath.Abs("../engine/python/testdata/pooled.py")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	model := func(name string, scale float64, mib int) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, fmt.Appendf(nil, "scale=%g mib=%d", scale, mib), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	load := func(name string, params map[string]any) (int, string) {
		return r.post(t, "/v2/repository/models/"+name+"/load", map[string]any{"parameters": params})
	}
	const bigMiB = 12
	for _, m := range []struct {
		name  string
		scale float64
		mib   int
	}{{"double", 2, 0}, {"big", 10, bigMiB}} {
		code, body := load(m.name, map[string]any{"model": model(m.name, m.scale, m.mib), "python-class": class + ":Model"})
		var st server.ModelStatus
		if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil || st.State != pool.Ready {
			t.Fatalf("load %s: %d %s", m.name, code, body)
		}
		if m.mib > 0 && st.EngineBytes < 2*(bigMiB-2)<<20 {
			t.Errorf("load %s: %+v, want the %d MiB it holds in each of 2 workers counted", m.name, st, m.mib)
		}
		if st.Bytes != st.EngineBytes+server.DefaultServingBytes {
			t.Errorf("load %s: bytes %d, want the workers' count %d and what serving it costs", m.name, st.Bytes, st.EngineBytes)
		}
	}

	infer := func(name string, x float64) (int, string) {
		return r.post(t, "/v2/models/"+name+"/infer", map[string]any{"inputs": []map[string]any{{"name": "x", "datatype": "FP64", "shape": []int{1}, "data": []float64{x}}}})
	}
	for _, tt := range []struct {
		name string
		want string
	}{{"double", `"data":[6]`}, {"big", `"data":[30]`}} {
		if code, body := infer(tt.name, 3); code != http.StatusOK || !strings.Contains(body, tt.want) {
			t.Errorf("infer %s: %d %s, want %s", tt.name, code, body, tt.want)
		}
	}
	cc, err := grpc.NewClient(strings.TrimPrefix(r.base, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	req := &oipgrpc.ModelInferRequest{ModelName: "big"}
	if err := oipgrpc.SetInputs(req, []oip.Tensor{{Name: "x", Datatype: oip.FP64, Shape: []int64{2}, Data: []float64{1, -2}}}, false); err != nil {
		t.Fatal(err)
	}
	resp, err := oipgrpc.NewGRPCInferenceServiceClient(cc).ModelInfer(context.Background(), req)
	if err != nil {
		t.Fatalf("gRPC infer big: %v", err)
	}
	if out, err := oipgrpc.OutputTensors(resp); err != nil || fmt.Sprint(out[0].Data) != "[10 -20]" {
		t.Errorf("gRPC infer big: %v, %v; want y [10 -20]", out, err)
	}

	for _, tt := range []struct {
		name   string
		params map[string]any
		code   int
		want   string
	}{
		{"alone", map[string]any{"model": model("alone", 1, 0), "python-class": class + ":Alone"}, http.StatusBadRequest, "add the class attribute ebb_multi_model = True"},
		{"classless", map[string]any{"model": model("classless", 1, 0)}, http.StatusBadRequest, "engine python needs its class: give parameter python-class"},
		{"python2", map[string]any{"model": model("python2", 1, 0), "python-class": class + ":Model", "python-interpreter": "/usr/bin/python2.7"}, http.StatusBadRequest,
			"asks for python interpreter /usr/bin/python2.7, but this pool's workers run /usr/bin/python3"},
		{"huge", map[string]any{"model": model("huge", 1, 40), "python-class": class + ":Model"}, http.StatusInsufficientStorage, "more than this replica's whole memory budget"},
		{"trees", map[string]any{"model": model("trees", 1, 0), "engine": "trees"}, http.StatusConflict, "this replica's pool runs engine python"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := load(tt.name, tt.params); code != tt.code || !strings.Contains(body, tt.want) {
				t.Errorf("load: %d %s, want %d with %q", code, body, tt.code, tt.want)
			}
		})
	}

	usedBytes := func() int64 {
		resp, err := http.Get(r.base + "/ebb/v1/replica")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var info struct{ Pool server.PoolInfo }
		if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
			t.Fatal(err)
		}
		return info.Pool.UsedBytes
	}
	before := usedBytes()
	if code, body := r.post(t, "/v2/repository/models/big/unload", nil); code != http.StatusOK {
		t.Fatalf("unload big: %d %s", code, body)
	}
	if after := usedBytes(); before-after < 2*(bigMiB-2)<<20 {
		t.Errorf("the pool counts %d bytes before unloading big, %d after; want big's memory given back", before, after)
	}
	if code, body := infer("big", 1); code != http.StatusNotFound {
		t.Errorf("infer big after its unload: %d %s, want 404", code, body)
	}
	if code, body := r.post(t, "/v2/repository/index", nil); code != http.StatusOK || !strings.Contains(body, `"name":"double","state":"READY"`) || strings.Contains(body, `"big"`) {
		t.Errorf("index after the unload: %d %s", code, body)
	}

	// A worker that exits takes the models with it: the replica stops.
	if code, body := infer("double", -999); code != http.StatusInternalServerError || !strings.Contains(body, "python worker exited") {
		t.Errorf("infer that ends a worker: %d %s, want 500 with the exit", code, body)
	}
	select {
	case err := <-r.done:
		if err == nil || !strings.Contains(err.Error(), "a python worker of this pool replica exited") {
			t.Errorf("replica ended with %v, want the worker's exit", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the replica did not stop after its worker exited")
	}
}
