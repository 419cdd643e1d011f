package python_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
)

// These tests run Python models in `ebb replica --engine python`, the Go
// replica server in front of the workers, over REST and gRPC.

// typedInputs are the inputs of testdata/typed.py in REST: name, datatype
// and data (1 row of 2), which it echoes.
var typedInputs = []struct{ name, datatype, data string }{
	{"b", "BOOL", `[true,false]`},
	{"i8", "INT8", `[-128,127]`},
	{"i16", "INT16", `[-32768,32767]`},
	{"i32", "INT32", `[-2147483648,7]`},
	{"i64", "INT64", `[-1,4611686018427387904]`},
	{"u8", "UINT8", `[0,255]`},
	{"u16", "UINT16", `[0,65535]`},
	{"u32", "UINT32", `[0,4294967295]`},
	{"u64", "UINT64", `[0,4294967296]`},
	{"f16", "FP16", `[1.5,-2048]`},
	{"bf16", "BF16", `[1.5,-2]`},
	{"f32", "FP32", `[[1.5,-0.25]]`},
	{"f64", "FP64", `[1e300,-2]`},
	{"s", "BYTES", `["hé","x"]`},
}

// typedRequest is one REST request for testdata/typed.py with a value of
// every datatype.
func typedRequest() string {
	parts := make([]string, len(typedInputs))
	for i, in := range typedInputs {
		parts[i] = fmt.Sprintf(`{"name":%q,"shape":[1,2],"datatype":%q,"data":%s}`, in.name, in.datatype, in.data)
	}
	return `{"id":"a","inputs":[` + strings.Join(parts, ",") + `]}`
}

// typedOutputs is the outputs typed.py answers typedRequest with, as JSON
// decodes them.
func typedOutputs(t *testing.T, kind string) []any {
	var out []any
	for _, in := range typedInputs {
		var data any
		if err := json.Unmarshal([]byte(in.data), &data); err != nil {
			t.Fatal(err)
		}
		if flat, ok := data.([]any); ok && len(flat) == 1 {
			data = flat[0] // f32's nested row
		}
		out = append(out, map[string]any{"name": in.name + "_out", "datatype": in.datatype, "shape": []any{1.0, 2.0}, "data": data})
	}
	return append(out, map[string]any{"name": "kind", "datatype": "BYTES", "shape": []any{1.0}, "data": []any{kind}})
}

// typedMetadata is typed.py's metadata as JSON decodes it.
func typedMetadata() map[string]any {
	var inputs, outputs []any
	for _, in := range typedInputs {
		inputs = append(inputs, map[string]any{"name": in.name, "datatype": in.datatype, "shape": []any{-1.0, 2.0}})
		outputs = append(outputs, map[string]any{"name": in.name + "_out", "datatype": in.datatype, "shape": []any{-1.0, 2.0}})
	}
	outputs = append(outputs, map[string]any{"name": "kind", "datatype": "BYTES", "shape": []any{-1.0}})
	return map[string]any{"name": "typed", "platform": "test", "inputs": inputs, "outputs": outputs}
}

func TestRequests(t *testing.T) {
	requirePython(t, "numpy")
	p := startReplica(t, nil, "--deployment", "typed", "--model", testdata(t, ""), "--python-class", "typed.py:Model")
	if err := p.notice.Err(); err != nil {
		t.Fatal(err)
	}
	infer := p.endpoint + "/v2/models/typed/infer"
	tests := []struct {
		name       string
		method     string
		url        string
		body       string
		wantStatus int
		want       map[string]any // the whole answer, when set
		wantError  string         // a part of the error message
	}{
		{
			name: "every datatype", method: "POST", url: infer, body: typedRequest(), wantStatus: 200,
			want: map[string]any{"model_name": "typed", "id": "a", "outputs": typedOutputs(t, "numpy")},
		},
		{
			name: "output filter", method: "POST", url: infer,
			body:       strings.Replace(typedRequest(), `"inputs"`, `"outputs":[{"name":"s_out"}],"inputs"`, 1),
			wantStatus: 200,
			want:       map[string]any{"model_name": "typed", "id": "a", "outputs": typedOutputs(t, "numpy")[13:14]},
		},
		{name: "not JSON", method: "POST", url: infer, body: `{"inputs":`, wantStatus: 400, wantError: "not valid JSON"},
		{name: "empty body", method: "POST", url: infer, body: ``, wantStatus: 400, wantError: "request body is empty"},
		{name: "unknown input", method: "POST", url: infer, body: strings.Replace(typedRequest(), `"name":"b"`, `"name":"zz"`, 1),
			wantStatus: 400, wantError: `unknown input "zz"`},
		{name: "missing input", method: "POST", url: infer, body: `{"inputs":[{"name":"b","shape":[1,2],"datatype":"BOOL","data":[true,false]}]}`,
			wantStatus: 400, wantError: `missing input`},
		{name: "wrong datatype", method: "POST", url: infer, body: strings.Replace(typedRequest(), `"datatype":"BOOL"`, `"datatype":"BYTES"`, 1),
			wantStatus: 400, wantError: `input "b"`},
		{name: "shape mismatch", method: "POST", url: infer, body: strings.Replace(typedRequest(), `[1e300,-2]`, `[1e300]`, 1),
			wantStatus: 400, wantError: `input "f64"`},
		{name: "unknown output", method: "POST", url: infer, body: strings.Replace(typedRequest(), `"inputs"`, `"outputs":[{"name":"nope"}],"inputs"`, 1),
			wantStatus: 400, wantError: `unknown output "nope"`},
		{name: "other model", method: "POST", url: p.endpoint + "/v2/models/other/infer", body: `{}`, wantStatus: 404, wantError: `model "other" not found`},
		{name: "GET infer", method: "GET", url: infer, wantStatus: 405},
		{name: "live", method: "GET", url: p.endpoint + "/v2/health/live", wantStatus: 200, want: map[string]any{"live": true}},
		{name: "ready", method: "GET", url: p.endpoint + "/v2/health/ready", wantStatus: 200, want: map[string]any{"ready": true}},
		{name: "metadata", method: "GET", url: p.endpoint + "/v2/models/typed", wantStatus: 200, want: typedMetadata()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body any
			if tt.method == "POST" {
				body = tt.body
			}
			status, got := call(t, tt.method, tt.url, body)
			if status != tt.wantStatus {
				t.Errorf("status %d, want %d: %v", status, tt.wantStatus, got)
			}
			if tt.want != nil {
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("answer (-want +got):\n%s", diff)
				}
			}
			if tt.wantError != "" {
				if msg, _ := got["error"].(string); !strings.Contains(msg, tt.wantError) {
					t.Errorf("error %q does not contain %q", msg, tt.wantError)
				}
			}
		})
	}
}

// TestModelErrors checks how the replica answers predict's exceptions and
// a worker's crash over REST.
func TestModelErrors(t *testing.T) {
	requirePython(t, "numpy")
	p := startReplica(t, nil, "--deployment", "ctl", "--model", testdata(t, ""), "--python-class", "control.py:Model")
	if err := p.notice.Err(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cmd        string
		wantStatus int
		wantError  []string
	}{
		{"fail", 500, []string{"model ctl: ValueError: the model cannot handle fail"}},
		{"reject", 400, []string{"ValueError: reject is not for this model"}},
		{"badout", 500, []string{`output "pid" cannot be sent as an OIP v2 tensor`}},
		{"crash", 500, []string{"model ctl: python worker exited: exit status 3", "crashing on purpose"}},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			status, got := call(t, "POST", p.endpoint+"/v2/models/ctl/infer",
				`{"inputs":[{"name":"cmd","shape":[1],"datatype":"BYTES","data":["`+tt.cmd+`"]}]}`)
			if status != tt.wantStatus {
				t.Errorf("status %d, want %d: %v", status, tt.wantStatus, got)
			}
			msg, _ := got["error"].(string)
			for _, w := range tt.wantError {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
	// The one worker is restarted: a request sent now waits for it.
	status, got := call(t, "POST", p.endpoint+"/v2/models/ctl/infer", `{"inputs":[{"name":"cmd","shape":[1],"datatype":"BYTES","data":["ok"]}]}`)
	if status != 200 {
		t.Errorf("after the crash: %d %v, want 200", status, got)
	}
}

// TestAnyInputsReplica serves a class without metadata(): it takes whatever
// inputs a request carries.
func TestAnyInputsReplica(t *testing.T) {
	requirePython(t, "numpy")
	p := startReplica(t, nil, "--deployment", "echo", "--model", testdata(t, ""), "--python-class", "echo.py:Model")
	if err := p.notice.Err(); err != nil {
		t.Fatal(err)
	}
	status, got := call(t, "POST", p.endpoint+"/v2/models/echo/infer",
		`{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,2]},{"name":"s","shape":[1],"datatype":"BYTES","data":["hé"]}]}`)
	want := map[string]any{"model_name": "echo", "outputs": []any{
		map[string]any{"name": "kind", "datatype": "BYTES", "shape": []any{2.0}, "data": []any{"numpy", "numpy"}},
		map[string]any{"name": "x_out", "datatype": "FP32", "shape": []any{2.0}, "data": []any{1.0, 2.0}},
		map[string]any{"name": "s_out", "datatype": "BYTES", "shape": []any{1.0}, "data": []any{"hé"}},
	}}
	if status != 200 || !cmp.Equal(want, got) {
		t.Errorf("infer = %d %v, want 200 %v", status, got, want)
	}
	status, got = call(t, "POST", p.endpoint+"/v2/models/echo/infer", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]},{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`)
	if status != 400 {
		t.Errorf("an input given twice: %d %v, want 400", status, got)
	}
}

func TestSecret(t *testing.T) {
	requirePython(t, "numpy")
	p := startReplica(t, []string{"EBB_REPLICA_SECRET=s3cret"}, "--deployment", "ctl", "--model", testdata(t, ""), "--python-class", "control.py:Model")
	if err := p.notice.Err(); err != nil {
		t.Fatal(err)
	}
	body := `{"inputs":[{"name":"cmd","shape":[1],"datatype":"BYTES","data":["ok"]}]}`
	if status, got := call(t, "POST", p.endpoint+"/v2/models/ctl/infer", body); status != http.StatusUnauthorized {
		t.Errorf("infer without the secret: %d %v, want 401", status, got)
	}
	if status, _ := call(t, "GET", p.endpoint+"/v2/health/ready", nil); status != 200 {
		t.Errorf("ready without the secret: %d, want 200", status)
	}
}

// TestGRPC sends every datatype over gRPC, as typed contents and as raw
// contents.
func TestGRPC(t *testing.T) {
	requirePython(t, "numpy")
	p := startReplica(t, nil, "--deployment", "typed", "--model", testdata(t, ""), "--python-class", "typed.py:Model")
	if err := p.notice.Err(); err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(strings.TrimPrefix(p.endpoint, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := oipgrpc.NewGRPCInferenceServiceClient(cc)
	in := everyDatatype()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, raw := range []bool{false, true} {
		req := &oipgrpc.ModelInferRequest{ModelName: "typed"}
		if err := oipgrpc.SetInputs(req, in, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := client.ModelInfer(ctx, req)
		if err != nil {
			t.Fatalf("raw %v: ModelInfer: %v", raw, err)
		}
		got, err := oipgrpc.OutputTensors(resp)
		if err != nil {
			t.Fatal(err)
		}
		var want []oip.Tensor
		for _, tt := range in {
			tt.Name += "_out"
			want = append(want, tt)
		}
		want = append(want, oip.Tensor{Name: "kind", Datatype: oip.BYTES, Shape: []int64{1}, Data: []string{"numpy"}})
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("raw %v: outputs (-want +got):\n%s", raw, diff)
		}
	}
	meta, err := client.ModelMetadata(ctx, &oipgrpc.ModelMetadataRequest{Name: "typed"})
	if err != nil || len(meta.GetInputs()) != len(in) || meta.GetPlatform() != "test" {
		t.Errorf("ModelMetadata = %v, %v; want the %d declared inputs", meta, err, len(in))
	}
	_, err = client.ModelInfer(ctx, &oipgrpc.ModelInferRequest{ModelName: "typed"})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("ModelInfer without inputs: %v, want InvalidArgument", err)
	}
}

// TestBatching checks that with batching on, concurrent one-row requests
// reach predict together and each gets its own rows back.
func TestBatching(t *testing.T) {
	requirePython(t, "numpy")
	p := startReplica(t, nil, "--deployment", "ctl", "--model", testdata(t, ""), "--python-class", "control.py:Model",
		"--python-workers", "2", "--batch-max-size", "8", "--batch-max-queue-delay", "300ms")
	if err := p.notice.Err(); err != nil {
		t.Fatal(err)
	}
	const n = 8
	rows := make([][]float64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			status, got := call(t, "POST", p.endpoint+"/v2/models/ctl/infer", `{"inputs":[{"name":"cmd","shape":[1],"datatype":"BYTES","data":["ok"]}]}`)
			if status != 200 {
				t.Errorf("request %d: %d %v", i, status, got)
				return
			}
			outs := got["outputs"].([]any)
			for _, o := range outs {
				o := o.(map[string]any)
				if o["name"] == "rows" {
					for _, v := range o["data"].([]any) {
						rows[i] = append(rows[i], v.(float64))
					}
				}
			}
		})
	}
	wg.Wait()
	most := 0.0
	for i, r := range rows {
		if len(r) != 1 {
			t.Errorf("request %d got rows %v, want its one row", i, r)
			continue
		}
		most = max(most, r[0])
	}
	if most < 2 {
		t.Errorf("predict saw at most %v row(s) at a time; want batches of the %d concurrent requests", most, n)
	}
}

// TestDrain checks that SIGTERM lets a request in flight finish before the
// replica exits 0, and stops the workers.
func TestDrain(t *testing.T) {
	requirePython(t, "numpy")
	entered, release := fifos(t)
	p := startReplica(t, []string{"ENTERED=" + entered, "RELEASE=" + release},
		"--deployment", "slow", "--model", testdata(t, ""), "--python-class", "control.py:Model")
	if err := p.notice.Err(); err != nil {
		t.Fatal(err)
	}
	workers := workerPIDs(t, p.cmd.Process.Pid)
	if len(workers) != 1 {
		t.Fatalf("replica runs workers %v, want one", workers)
	}
	type answer struct {
		status int
		body   map[string]any
	}
	done := make(chan answer, 1)
	go func() {
		status, body := call(t, "POST", p.endpoint+"/v2/models/slow/infer", `{"inputs":[{"name":"cmd","shape":[1],"datatype":"BYTES","data":["wait"]}]}`)
		done <- answer{status, body}
	}()
	// Opening the FIFO blocks until predict opens it: the request is in
	// flight.
	if _, err := os.ReadFile(entered); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, `"msg":"draining"`)
	if err := os.WriteFile(release, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if a := <-done; a.status != 200 {
		t.Errorf("in-flight request got %d %v, want 200", a.status, a.body)
	}
	for range p.lines {
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("replica exit after drain: %v, want exit 0", err)
	}
	if alive(workers[0]) {
		t.Errorf("worker %d outlived the replica", workers[0])
	}
}

// TestWorkersDieWithReplica kills the replica with SIGKILL: its workers see
// their channel close and exit.
func TestWorkersDieWithReplica(t *testing.T) {
	requirePython(t, "numpy")
	p := startReplica(t, nil, "--deployment", "ctl", "--model", testdata(t, ""), "--python-class", "control.py:Model", "--python-workers", "3")
	if err := p.notice.Err(); err != nil {
		t.Fatal(err)
	}
	workers := workerPIDs(t, p.cmd.Process.Pid)
	if len(workers) != 3 {
		t.Fatalf("replica runs workers %v, want 3", workers)
	}
	p.cmd.Process.Kill()
	for range p.lines {
	}
	p.cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range workers {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("worker %d still runs 10s after its replica was killed", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestTorch(t *testing.T) {
	// Outputs that are torch tensors, with Debian's python3-torch (which
	// .ci/run installs: under CI=true the test fails without it).
	requirePython(t, "numpy", "torch")
	p := startReplica(t, nil, "--deployment", "linear", "--model", testdata(t, ""), "--python-class", "torch_linear.py:Model")
	if err := p.notice.Err(); err != nil {
		t.Fatal(err)
	}
	status, got := call(t, "POST", p.endpoint+"/v2/models/linear/infer",
		`{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[0,0,2]]}]}`)
	want := map[string]any{"model_name": "linear", "outputs": []any{
		map[string]any{"name": "predict", "datatype": "FP32", "shape": []any{2.0, 2.0}, "data": []any{14.5, -0.5, 6.5, -0.5}},
	}}
	if status != 200 {
		t.Fatalf("status %d: %v", status, got)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
}

// TestDeclaredSignature checks requests against a class's metadata(): the
// server refuses those that do not match, naming the tensor, and converts
// numbers to the declared datatype.
func TestDeclaredSignature(t *testing.T) {
	requirePython(t, "numpy")
	p := startReplica(t, nil, "--deployment", "sig", "--model", testdata(t, ""), "--python-class", "signature.py:Model")
	if err := p.notice.Err(); err != nil {
		t.Fatal(err)
	}
	infer := p.endpoint + "/v2/models/sig/infer"
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantError  []string
		wantData   []any
	}{
		{name: "ok", body: `{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6.5]}]}`, wantStatus: 200, wantData: []any{6.0, 15.5}},
		{name: "another numeric datatype", body: `{"inputs":[{"name":"x","shape":[1,3],"datatype":"INT64","data":[1,2,3]}]}`, wantStatus: 200, wantData: []any{6.0}},
		{name: "wrong width", body: `{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`,
			wantStatus: 400, wantError: []string{`input "x"`, "[1,2]", "[-1,3]"}},
		{name: "wrong datatype", body: `{"inputs":[{"name":"x","shape":[1,3],"datatype":"BYTES","data":["1","2","3"]}]}`,
			wantStatus: 400, wantError: []string{`input "x"`, "BYTES", "FP32"}},
		{name: "unknown input", body: `{"inputs":[{"name":"y","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}`,
			wantStatus: 400, wantError: []string{`unknown input "y"`, `"x" (FP32 [-1,3])`}},
		{name: "unknown output", body: `{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}],"outputs":[{"name":"z"}]}`,
			wantStatus: 400, wantError: []string{`unknown output "z"`, "predict"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, got := call(t, "POST", infer, tt.body)
			if status != tt.wantStatus {
				t.Errorf("status %d, want %d: %v", status, tt.wantStatus, got)
			}
			msg, _ := got["error"].(string)
			for _, w := range tt.wantError {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if tt.wantData != nil {
				want := map[string]any{"model_name": "sig", "outputs": []any{
					map[string]any{"name": "predict", "datatype": "FP32", "shape": []any{float64(len(tt.wantData))}, "data": tt.wantData},
				}}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("answer (-want +got):\n%s", diff)
				}
			}
		})
	}
}
