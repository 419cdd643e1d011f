package hostile

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// mustWrite writes a file, making its directory.
func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestModelAndCodePathsConfined is the Why cases "a python class may point
// at any file", "a model path of /dev/zero is read without limit" and "a
// model path of /etc/shadow is accepted at create, and its first byte leaks
// in the 503 error text": even with the admin token, a model or class file
// outside --model-roots (directly, by "..", or through a symbolic link),
// one that is not a regular file or one over --max-model-bytes is refused
// with 400 at create, and no message echoes a file's contents or a
// multi-kilobyte input.
func TestModelAndCodePathsConfined(t *testing.T) {
	roots, outside := t.TempDir(), t.TempDir()
	const secret = "QSECRET-do-not-echo"
	mustWrite(t, filepath.Join(outside, "secret.json"), []byte(secret))
	mustWrite(t, filepath.Join(outside, "evil.py"), []byte("class Evil:\n    pass\n"))
	mustWrite(t, filepath.Join(roots, "m", "model.py"), []byte("class Model:\n    pass\n"))
	mustWrite(t, filepath.Join(roots, "big.json"), []byte(strings.Repeat("0", 8192)))
	for link, target := range map[string]string{
		"m/link.py":   filepath.Join(outside, "evil.py"),
		"zero":        "/dev/zero",
		"secret.json": filepath.Join(outside, "secret.json"),
		"outdir":      outside,
	} {
		if err := os.Symlink(target, filepath.Join(roots, link)); err != nil {
			t.Fatal(err)
		}
	}
	u := startUp(t, roots, "--max-model-bytes", "4096")
	model := func(path string) string {
		return fmt.Sprintf(`{"name":"d","spec":{"model":%q,"engine":"trees","scaling":{"minReplicas":0,"maxReplicas":1}}}`, path)
	}
	class := func(c string) string {
		return fmt.Sprintf(`{"name":"d","spec":{"model":%q,"engine":"python","python":{"class":%q},"scaling":{"minReplicas":0,"maxReplicas":1}}}`, filepath.Join(roots, "m"), c)
	}
	long := filepath.Join(roots, strings.Repeat("A", 10000)+".json")
	tests := []struct {
		name, body string
		wantMsg    string // in the error message
	}{
		{"model /dev/zero", model("/dev/zero"), "outside the directories"},
		{"model /etc/shadow", model("/etc/shadow"), "outside the directories"},
		{"model outside the roots", model(filepath.Join(outside, "secret.json")), "outside the directories"},
		{"model by ..", model(filepath.Join(roots, "..", filepath.Base(outside), "secret.json")), "outside the directories"},
		{"model relative", model("../secret.json"), "outside the directories"},
		{"model linked to /dev/zero", model(filepath.Join(roots, "zero")), "links to a file outside"},
		{"model linked outside", model(filepath.Join(roots, "secret.json")), "links to a file outside"},
		{"model through a linked directory", model(filepath.Join(roots, "outdir", "secret.json")), "links to a file outside"},
		{"model over --max-model-bytes", model(filepath.Join(roots, "big.json")), "more than 4096 bytes"},
		{"model path of 10 KB, clipped", model(long), "bytes)"},
		{"class absolute outside", class(filepath.Join(outside, "evil.py") + ":Evil"), "outside the directories"},
		{"class /etc/passwd", class("/etc/passwd.py:Evil"), "outside the directories"},
		{"class by ..", class("../../" + filepath.Base(outside) + "/evil.py:Evil"), "leaves the model's directory"},
		{"class linked outside", class("link.py:Evil"), "links to a file outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := u.do(t, req{path: "/v1/deployments", token: u.admin, body: tt.body})
			if code != http.StatusBadRequest || errorCode(body) != "deployment/invalid" || !strings.Contains(body, tt.wantMsg) {
				t.Errorf("HTTP %d %.600s; want 400 deployment/invalid saying %q", code, body, tt.wantMsg)
			}
			if strings.Contains(body, "QSECRET") || strings.Contains(body, "'Q'") || strings.Contains(body, "root:") {
				t.Errorf("the answer echoes a file's contents: %.600s", body)
			}
			if len(body) > 5000 {
				t.Errorf("the answer is %d bytes long: a multi-kilobyte input is echoed", len(body))
			}
		})
	}
	if code, _ := u.do(t, req{path: "/v1/deployments/d", token: u.admin}); code != http.StatusNotFound {
		t.Errorf("a refused deployment exists (%d)", code)
	}
}

// TestBrokenModelLeaksNothing is the rest of the /etc/shadow case: a file
// under the roots that is not a model fails its deployment with a reason
// (status.failure, and 503 to requests) that quotes none of its bytes.
func TestBrokenModelLeaksNothing(t *testing.T) {
	roots := t.TempDir()
	mustWrite(t, filepath.Join(roots, "shadow.json"), []byte("QSECRET:$6$salt$hash:19000:0:99999:7:::\n"))
	u := startUp(t, roots)
	spec := fmt.Sprintf(`{"name":"broken","spec":{"model":%q,"engine":"trees","scaling":{"minReplicas":0,"maxReplicas":1}}}`, filepath.Join(roots, "shadow.json"))
	if code, body := u.do(t, req{path: "/v1/deployments", token: u.admin, body: spec}); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	code, body := u.do(t, req{path: "/v2/models/broken/infer", body: `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}]}`})
	if code != http.StatusServiceUnavailable {
		t.Errorf("infer on a broken model: %d %s; want 503", code, body)
	}
	_, status := u.do(t, req{path: "/v1/deployments/broken", token: u.admin})
	var d struct {
		Status struct {
			Failure string `json:"failure"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(status), &d); err != nil || d.Status.Failure == "" {
		t.Errorf("status.failure empty after failed starts: %s", status)
	}
	for what, s := range map[string]string{"503 answer": body, "status": status} {
		if strings.Contains(s, "QSECRET") || strings.Contains(s, "'Q'") || strings.Contains(s, "salt") {
			t.Errorf("the %s quotes the file: %.600s", what, s)
		}
	}
}

// replicaCount is the number of processes whose parent is pid.
func replicaCount(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at ")".
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			n++
		}
	}
	return n
}

// TestReplicaCountsBounded is the Why case "maxReplicas: 1000000000 and
// minReplicas: 40 are accepted, and 40 processes start at once": absurd
// counts are refused with 400, and a count under the bound is held to
// --max-replicas-total processes, saying so in status.reason.
func TestReplicaCountsBounded(t *testing.T) {
	u := startUp(t, t.TempDir(), "--max-replicas-total", "3")
	for _, tt := range []struct{ name, scaling string }{
		{"maxReplicas 1e9", `{"maxReplicas":1000000000}`},
		{"minReplicas 1e6", `{"minReplicas":1000000,"maxReplicas":1000000}`},
		{"maxReplicas 2^31-1", `{"maxReplicas":2147483647}`},
		{"negative", `{"minReplicas":-1,"maxReplicas":1}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"name":"abuse","spec":{"engine":"echo","scaling":%s}}`, tt.scaling)
			code, out := u.do(t, req{path: "/v1/deployments", token: u.admin, body: body})
			if code != http.StatusBadRequest {
				t.Errorf("HTTP %d %.400s; want 400", code, out)
			}
		})
	}
	body := `{"name":"forty","spec":{"engine":"echo","scaling":{"minReplicas":40,"maxReplicas":40}}}`
	if code, out := u.do(t, req{path: "/v1/deployments", token: u.admin, body: body}); code != http.StatusCreated {
		t.Fatalf("create minReplicas 40: %d %s", code, out)
	}
	most := 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		most = max(most, replicaCount(t, u.cmd.Process.Pid))
	}
	if most > 3 || most == 0 {
		t.Errorf("at most %d replica processes under ebb up; want 1 to 3 (--max-replicas-total 3)", most)
	}
	_, out := u.do(t, req{path: "/v1/deployments/forty", token: u.admin})
	if !strings.Contains(out, "--max-replicas-total 3") {
		t.Errorf("status does not say the cap holds replicas back: %.800s", out)
	}
}

// TestReplicaPortsAndBodies is the Why cases "nothing is authenticated on
// ... the replica ports" and "the gateway buffers each body up to 64 MiB":
// a replica's port refuses inference without the per-replica secret only
// the gateway holds (its health stays open), and the gateway answers 413
// from Content-Length before reading a 1 GiB body.
func TestReplicaPortsAndBodies(t *testing.T) {
	u := startUp(t, t.TempDir())
	if code, out := u.do(t, req{path: "/v1/deployments", token: u.admin, body: `{"name":"e","spec":{"engine":"echo","scaling":{"minReplicas":1,"maxReplicas":1}}}`}); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, out)
	}
	infer := `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,2],"data":[1,2]}]}`
	var endpoint string
	for deadline := time.Now().Add(30 * time.Second); endpoint == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, out := u.do(t, req{path: "/v1/deployments/e", token: u.admin})
		var d struct {
			Status struct {
				ReplicaStatuses []struct{ State, Endpoint string } `json:"replicaStatuses"`
			} `json:"status"`
		}
		_ = json.Unmarshal([]byte(out), &d)
		for _, r := range d.Status.ReplicaStatuses {
			if r.State == "ready" && r.Endpoint != "" {
				endpoint = r.Endpoint
			}
		}
	}
	if endpoint == "" {
		t.Fatal("no ready replica within 30s")
	}
	replica := &up{base: endpoint}
	for _, tt := range []struct {
		name string
		on   *up
		r    req
		want int
	}{
		{"replica inference without the secret", replica, req{path: "/v2/models/e/infer", body: infer}, 401},
		{"replica metadata without the secret", replica, req{path: "/v2/models/e"}, 401},
		{"replica inference with the admin token", replica, req{path: "/v2/models/e/infer", body: infer, token: u.admin}, 401},
		{"replica health stays open", replica, req{path: "/v2/health/ready"}, 200},
		{"through the gateway", u, req{path: "/v2/models/e/infer", body: infer}, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if code, out := tt.on.do(t, tt.r); code != tt.want {
				t.Errorf("HTTP %d %.300s; want %d", code, out, tt.want)
			}
		})
	}

	t.Run("1 GiB declared", func(t *testing.T) {
		c, err := net.Dial("tcp", u.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		fmt.Fprintf(c, "POST /v2/models/e/infer HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", u.addr, int64(1)<<30)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer before the body: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || time.Since(start) > 2*time.Second {
			t.Errorf("HTTP %d after %s; want 413 at once", resp.StatusCode, time.Since(start))
		}
	})
}
