package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/certs/certstest"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/serving"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// TestTLSEbbUp runs `ebb up --tls-cert --tls-key`: the gateway, admin API
// and gRPC gateway serve TLS with a certificate of a private CA; the CLI
// talks to it with --ca-file and refuses it without; a renewed certificate
// is served without a restart. Replicas answer only requests that carry
// their secret: a direct request to a replica's port gets 401 while the
// same request through the gateway is served.
func TestTLSEbbUp(t *testing.T) {
	ca := certstest.NewCA(t, "e2e CA")
	certDir := t.TempDir()
	files := ca.Server(t, "first").Write(t, certDir, ca)
	addr, grpcAddr, dataDir := freeAddr(t), freeAddr(t), t.TempDir()
	base := "https://" + addr
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, DisableKeepAlives: true}}
	startTLSEbb(t, hc, base, dataDir, "--addr", addr, "--grpc-addr", grpcAddr,
		"--tls-cert", files.Cert, "--tls-key", files.Key)
	token := adminToken(t, dataDir)

	// The admin API over HTTPS: create a warm deployment.
	d := diabetesSpec(t, serving.Scaling{MinReplicas: 1, MaxReplicas: 1, ScaleToZeroAfter: serving.D(time.Hour)})
	if code, body := send(t, hc, http.MethodPost, base+"/v1/deployments", token, d, ""); code != http.StatusCreated {
		t.Fatalf("create deployment over HTTPS: %d %s", code, body)
	}

	// The CLI trusts the private CA with --ca-file (and $EBB_CA_FILE), not
	// without.
	cli := func(extra ...string) (string, error) {
		cmd := exec.Command(ebbBin, append([]string{"get", "deployments", "--server", base}, extra...)...)
		cmd.Env = append(os.Environ(), "EBB_DATA_DIR="+dataDir, "EBB_CONFIG="+filepath.Join(t.TempDir(), "config.yaml"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := cli("--ca-file", files.CA); err != nil || !strings.Contains(out, "diabetes") {
		t.Errorf("ebb get deployments --ca-file: %v\n%s", err, out)
	}
	if out, err := cli(); err == nil || !strings.Contains(out, "certificate") {
		t.Errorf("ebb get deployments without the CA: %v; want a certificate error\n%s", err, out)
	}

	// Inference through the gateway, REST over HTTPS.
	row := loadGolden(t).Rows[0]
	req := oip.InferRequest{Inputs: []oip.RequestInput{{Name: "input", Shape: []int64{1, int64(len(row))}, Datatype: oip.FP64}}}
	req.Inputs[0].Data, _ = json.Marshal(row)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if code, body := send(t, hc, http.MethodPost, base+"/v2/models/diabetes/infer", "", req, ""); code != http.StatusOK {
		t.Fatalf("infer through the HTTPS gateway: %d %s", code, body)
	}

	// gRPC over TLS.
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	greq := &oipgrpc.ModelInferRequest{ModelName: "diabetes"}
	if err := oipgrpc.SetInputs(greq, []oip.Tensor{{Name: "input", Datatype: oip.FP64, Shape: []int64{1, int64(len(row))}, Data: row}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := oipgrpc.NewGRPCInferenceServiceClient(cc).ModelInfer(ctx, greq); err != nil {
		t.Errorf("ModelInfer over TLS: %v", err)
	}
	plain, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := oipgrpc.NewGRPCInferenceServiceClient(plain).ServerLive(ctx, &oipgrpc.ServerLiveRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("cleartext gRPC to the TLS listener: %v; want Unavailable", err)
	}

	// The replica's own port: health answers, the model does not without
	// the secret the gateway sends.
	var got serving.Deployment
	code, body := send(t, hc, http.MethodGet, base+"/v1/deployments/diabetes", token, nil, "")
	if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil || len(got.Status.ReplicaStatuses) == 0 {
		t.Fatalf("GET deployment: %d %s", code, body)
	}
	ep := got.Status.ReplicaStatuses[0].Endpoint
	plainHTTP := &http.Client{Timeout: 10 * time.Second}
	if code, body := send(t, plainHTTP, http.MethodPost, ep+"/v2/models/diabetes/infer", "", req, ""); code != http.StatusUnauthorized {
		t.Errorf("infer straight to the replica without its secret: %d %s; want 401", code, body)
	}
	if code, body := send(t, plainHTTP, http.MethodPost, ep+"/v2/models/diabetes/infer", "", req, "guessed"); code != http.StatusUnauthorized {
		t.Errorf("infer straight to the replica with a wrong secret: %d %s; want 401", code, body)
	}
	if code, _ := send(t, plainHTTP, http.MethodGet, ep+"/v2/health/ready", "", nil, ""); code != http.StatusOK {
		t.Errorf("replica health without the secret: %d; want 200", code)
	}
	rc, err := grpc.NewClient(strings.TrimPrefix(ep, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := oipgrpc.NewGRPCInferenceServiceClient(rc).ModelInfer(ctx, greq); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC ModelInfer straight to the replica: %v; want Unauthenticated", err)
	}

	// The secrets are stored with the handles: only ebb's user reads them.
	if fi, err := os.Stat(filepath.Join(dataDir, "ebb.db")); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("store file mode %v; want 0600", fi.Mode().Perm())
	}

	// A renewed certificate is served without a restart.
	ca.Server(t, "second").Write(t, certDir, nil)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := hc.Get(base + "/v2/health/live")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if cn := resp.TLS.PeerCertificates[0].Subject.CommonName; cn == "second" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("still serving %q 20s after the certificate files changed", cn)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// send sends a JSON request with an optional bearer token and replica
// secret, and returns the status and body.
func send(t *testing.T, c *http.Client, method, url, token string, body any, secret string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if secret != "" {
		req.Header.Set("Ebb-Replica-Secret", secret)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startTLSEbb runs `ebb up` with args and waits until base answers ready
// over HTTPS with c.
func startTLSEbb(t *testing.T, c *http.Client, base, dataDir string, args ...string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "ebb-up.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ebbBin, append([]string{"up", "--data-dir", dataDir, "--drain-timeout", "5s", "--model-roots", examples}, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logFile.Close()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("ebb up log:\n%s", tail(b, 6000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(base + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("ebb up exited early:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Sprintf("ebb up not ready over HTTPS within 30s (last error %v)", err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
