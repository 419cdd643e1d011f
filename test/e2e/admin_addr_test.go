package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
)

// TestAdminAddr runs `ebb up --admin-addr`: the admin API answers on its
// own address (and checks Host there), inference stays on --addr, and /v1
// on --addr is a 404 that says where the admin API went.
func TestAdminAddr(t *testing.T) {
	addr, adminAddr, dataDir := freeAddr(t), freeAddr(t), t.TempDir()
	p := startEbb(t, addr, dataDir, "--admin-addr", adminAddr, "--grpc-addr", "")
	admin := *p
	admin.base = "http://" + adminAddr

	d := diabetesSpec(t, serving.Scaling{MinReplicas: 0, MaxReplicas: 1, ScaleToZeroAfter: serving.D(time.Minute)})
	if code := admin.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("create on --admin-addr: %d, want 201", code)
	}

	// /v1 on the inference address: 404 admin/elsewhere, even with the
	// admin token.
	req, _ := http.NewRequest(http.MethodGet, p.base+"/v1/deployments", nil)
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e api.ErrorBody
	if resp.StatusCode != http.StatusNotFound || json.Unmarshal(b, &e) != nil || e.Error.Code != "admin/elsewhere" {
		t.Fatalf("GET /v1/deployments on --addr = %d %s; want 404 admin/elsewhere", resp.StatusCode, b)
	}

	// Inference stays on --addr (and wakes the deployment).
	g := loadGolden(t)
	got, code, body, err := infer(t.Context(), p.base, g.Rows[0])
	if err != nil || code != http.StatusOK || !near(got, g.Predictions[0]) {
		t.Fatalf("infer on --addr: %v %d %s (got %v, want %v)", err, code, body, got, g.Predictions[0])
	}
	// And the inference path is not served on the admin address.
	if _, code, _, _ := infer(t.Context(), admin.base, g.Rows[0]); code != http.StatusNotFound {
		t.Fatalf("infer on --admin-addr answered %d; want 404", code)
	}

	// The Host check follows the admin address: a rebinding name is refused.
	req, _ = http.NewRequest(http.MethodGet, admin.base+"/v1/deployments", nil)
	req.Host = "evil.example:80"
	req.Header.Set("Authorization", "Bearer "+p.token)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("admin request with Host evil.example = %d; want it refused", resp.StatusCode)
	}

	// The CLI reaches it with --server and finds the admin token for a
	// loopback server.
	cmd := exec.Command(ebbBin, "get", "deployments", "--server", admin.base)
	cmd.Env = append(os.Environ(), "EBB_DATA_DIR="+dataDir, "EBB_CONFIG="+filepath.Join(t.TempDir(), "config.yaml"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "diabetes") {
		t.Fatalf("ebb get deployments --server %s: %v\n%s", admin.base, err, out)
	}
	p.stop()
}
