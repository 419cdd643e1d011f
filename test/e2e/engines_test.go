package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// engineCase is one engine under the conformance requests, deployed through
// `ebb up` as a user would.
type engineCase struct {
	name    string
	spec    serving.Spec
	request string // a valid infer body
	// needs reports why the engine cannot run here, or "".
	needs func() string
}

func abs(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(rel)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(rel)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func engineCases(t *testing.T) []engineCase {
	echoBody := `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`
	return []engineCase{
		{
			name:    "trees",
			spec:    serving.Spec{Model: abs(t, "../../examples/diabetes/model.json"), Engine: "trees"},
			request: readFile(t, "../../examples/diabetes/request.json"),
		},
		{
			name:    "onnx",
			spec:    serving.Spec{Model: abs(t, "../../examples/mlp-onnx/model.onnx"), Engine: "onnx"},
			request: readFile(t, "../../examples/mlp-onnx/request.json"),
			needs: func() string {
				if err := onnx.Available(""); err != nil {
					return err.Error()
				}
				return ""
			},
		},
		{
			name: "python",
			spec: serving.Spec{Model: abs(t, "../../examples/sklearn-python/model.joblib"), Engine: "python",
				Python: &serving.Python{Class: "model.py:Model"}},
			request: readFile(t, "../../examples/sklearn-python/request.json"),
			needs: func() string {
				if exec.Command("/usr/bin/python3", "-c", "import sklearn, joblib").Run() != nil {
					return "/usr/bin/python3 cannot import scikit-learn: apt-get install python3-sklearn"
				}
				return ""
			},
		},
		{
			name:    "echo",
			spec:    serving.Spec{Engine: "echo"},
			request: echoBody,
		},
		{
			// Any OIP v2 server started with $PORT; here another ebb
			// replica stands in for Triton or MLServer.
			name: "http",
			spec: serving.Spec{Engine: "http", Command: []string{"sh", "-c",
				"exec " + ebbBin + " replica --engine echo --deployment conf-http --addr 127.0.0.1:$PORT"}},
			request: echoBody,
		},
	}
}

// TestEngineConformance sends the same OIP v2 requests to a deployment of
// every engine: metadata, readiness, a valid inference, and the bad requests
// that must be refused with 400 whatever engine serves them.
func TestEngineConformance(t *testing.T) {
	p := startEbb(t, freeAddr(t), t.TempDir())
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			if ec.needs != nil {
				if why := ec.needs(); why != "" {
					if os.Getenv("CI") == "true" {
						t.Fatalf("engine %s cannot run: %s", ec.name, why)
					}
					t.Skipf("engine %s cannot run: %s", ec.name, why)
				}
			}
			name := "conf-" + ec.name
			spec := ec.spec
			spec.Scaling = serving.Scaling{MinReplicas: 0, MaxReplicas: 1}
			if code := p.do(http.MethodPost, "/v1/deployments", serving.Deployment{Name: name, Spec: spec}, nil); code != http.StatusCreated {
				t.Fatalf("create deployment: %d", code)
			}
			t.Cleanup(func() { p.do(http.MethodDelete, "/v1/deployments/"+name, nil, nil) })
			base := p.base + "/v2/models/" + name

			// Ready without waking it: a deployment at zero can serve.
			var ready oip.ModelReady
			if code := getJSON(t, base+"/ready", &ready); code != http.StatusOK || !ready.Ready {
				t.Fatalf("GET ready = %d %+v; want 200 ready", code, ready)
			}

			// A valid request wakes it and is answered.
			code, body := post(t, base+"/infer", ec.request)
			if code != http.StatusOK {
				t.Fatalf("valid infer = %d %s", code, body)
			}
			var resp oip.InferResponse
			if err := json.Unmarshal([]byte(body), &resp); err != nil || len(resp.Outputs) == 0 {
				t.Fatalf("infer response %s: %v; want outputs", body, err)
			}
			if resp.ModelName != name {
				t.Errorf("model_name = %q; want %q", resp.ModelName, name)
			}

			var meta oip.ModelMetadata
			if code := getJSON(t, base, &meta); code != http.StatusOK || meta.Name != name || len(meta.Inputs) == 0 || len(meta.Outputs) == 0 {
				t.Errorf("GET metadata = %d %+v; want name %q with inputs and outputs", code, meta, name)
			}

			bad := []struct{ what, body, want string }{
				{"malformed JSON", `{"inputs": [`, ""},
				{"unknown input", strings.Replace(ec.request, `"name": "`, `"name": "no_such_`, 1), "no_such_"},
				{"no inputs", `{"inputs": []}`, ""},
			}
			// The compact echo body spells names without a space.
			bad[1].body = strings.Replace(bad[1].body, `"name":"`, `"name":"no_such_`, 1)
			for _, b := range bad {
				code, body := post(t, base+"/infer", b.body)
				if code != http.StatusBadRequest || !strings.Contains(body, b.want) {
					t.Errorf("%s: infer = %d %s; want 400 naming %q", b.what, code, body, b.want)
				}
			}
		})
	}
}

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, out)
	return resp.StatusCode
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Post(url, "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
