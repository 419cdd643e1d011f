package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// Ebb is one `ebb up` instance started by the harness.
type Ebb struct {
	// URL is the base URL of its gateway and admin API.
	URL  string
	Proc *Proc
	// Addr and DataDir are its listen address and data directory; Token is
	// the admin token it wrote there, sent with every admin request.
	Addr, DataDir, Token string
	c                    *http.Client
}

// StartEbb starts `ebb up` on a free port with a fresh data directory,
// pinned to the server CPUs, and waits until it is ready.
func (e *Env) StartEbb(ctx context.Context, name string) (*Ebb, error) {
	return e.StartEbbWith(ctx, EbbOptions{Name: name})
}

// EbbOptions say how to start `ebb up`.
type EbbOptions struct {
	// Name labels the process; it names the data directory under Work
	// unless DataDir is set.
	Name string
	// Addr is the listen address; empty picks a free loopback port.
	Addr string
	// DataDir is the data directory; empty is Work/Name.
	DataDir string
	// Flags are more flags for `ebb up`.
	Flags []string
	// Env is added to its environment.
	Env []string
}

// StartEbbWith starts `ebb up` as o says, pinned to the server CPUs, and
// waits until it is ready. Starting it again with the same Addr and DataDir
// restarts the same instance.
func (e *Env) StartEbbWith(ctx context.Context, o EbbOptions) (*Ebb, error) {
	addr := o.Addr
	if addr == "" {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		addr = "127.0.0.1:" + strconv.Itoa(port)
	}
	dir := o.DataDir
	if dir == "" {
		dir = filepath.Join(e.Work, o.Name)
	}
	argv := []string{e.Ebb, "up", "--addr", addr, "--data-dir", dir, "--log-level", "warn"}
	argv = append(argv, e.ebbUpExtraFlags()...)
	argv = append(argv, o.Flags...)
	p, err := e.Start(StartOptions{Name: o.Name, Dir: e.Root, Env: o.Env}, argv...)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.ebbs = append(e.ebbs, p)
	e.mu.Unlock()
	b := &Ebb{URL: "http://" + addr, Proc: p, Addr: addr, DataDir: dir, c: &http.Client{Timeout: 30 * time.Second}}
	if err := WaitHTTP(ctx, p, b.URL+"/v2/health/ready", 30*time.Second); err != nil {
		return nil, err
	}
	// ebb up keeps an admin token in its data dir when auth is on.
	if tok, err := os.ReadFile(filepath.Join(dir, "admin.token")); err == nil {
		b.Token = strings.TrimSpace(string(tok))
	}
	return b, nil
}

// Do sends an admin request (with the admin token) and returns the status
// and the body.
func (b *Ebb) Do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	return b.do(ctx, method, path, body)
}

// DeploymentSpec builds a spec for a deployment of model (absolute path,
// or "" for the echo engine) with fixed replica bounds.
func DeploymentSpec(engine, model string, minReplicas, maxReplicas int32, scaleToZeroAfter time.Duration) serving.Spec {
	return serving.Spec{
		Model:  model,
		Engine: engine,
		Scaling: serving.Scaling{
			MinReplicas:       minReplicas,
			MaxReplicas:       maxReplicas,
			TargetConcurrency: 8,
			ScaleToZeroAfter:  serving.D(scaleToZeroAfter),
		},
	}
}

// Create creates a deployment through the admin API.
func (b *Ebb) Create(ctx context.Context, name string, spec serving.Spec) error {
	body, err := json.Marshal(map[string]any{"name": name, "spec": spec})
	if err != nil {
		return err
	}
	code, resp, err := b.do(ctx, http.MethodPost, "/v1/deployments", body)
	if err != nil {
		return err
	}
	if code != http.StatusCreated {
		return fmt.Errorf("create deployment %s: HTTP %d: %s", name, code, resp)
	}
	return nil
}

// CreateToken creates a token with scopes through the admin API and
// returns its secret.
func (b *Ebb) CreateToken(ctx context.Context, name string, scopes ...string) (string, error) {
	body, err := json.Marshal(map[string]any{"name": name, "scopes": scopes})
	if err != nil {
		return "", err
	}
	code, resp, err := b.do(ctx, http.MethodPost, "/v1/tokens", body)
	if err != nil {
		return "", err
	}
	var created struct {
		Secret string `json:"secret"`
	}
	if code != http.StatusCreated || json.Unmarshal(resp, &created) != nil || created.Secret == "" {
		return "", fmt.Errorf("create token %s: HTTP %d: %s", name, code, resp)
	}
	return created.Secret, nil
}

// Delete deletes a deployment.
func (b *Ebb) Delete(ctx context.Context, name string) error {
	code, resp, err := b.do(ctx, http.MethodDelete, "/v1/deployments/"+name, nil)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("delete deployment %s: HTTP %d: %s", name, code, resp)
	}
	return nil
}

// Get returns a deployment with its status.
func (b *Ebb) Get(ctx context.Context, name string) (serving.Deployment, error) {
	var d serving.Deployment
	code, resp, err := b.do(ctx, http.MethodGet, "/v1/deployments/"+name, nil)
	if err != nil {
		return d, err
	}
	if code != http.StatusOK {
		return d, fmt.Errorf("get deployment %s: HTTP %d: %s", name, code, resp)
	}
	if err := json.Unmarshal(resp, &d); err != nil {
		return d, fmt.Errorf("get deployment %s: %w", name, err)
	}
	return d, nil
}

// WaitReady polls until the deployment has n ready replicas and returns
// the endpoint of the first ready one.
func (b *Ebb) WaitReady(ctx context.Context, name string, n int32, timeout time.Duration) (serving.Deployment, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var last serving.Deployment
	for {
		d, err := b.Get(ctx, name)
		if err == nil {
			last = d
			if d.Status.ReadyReplicas >= n {
				for _, r := range d.Status.ReplicaStatuses {
					if r.State == serving.ReplicaReady && r.Endpoint != "" {
						return d, r.Endpoint, nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return last, "", fmt.Errorf("deployment %s has %d of %d ready replicas after %s (reason: %q); ebb log tail:\n%s",
				name, last.Status.ReadyReplicas, n, timeout, last.Status.Reason, b.Proc.LogTail(2000))
		case <-b.Proc.Done():
			return last, "", fmt.Errorf("ebb exited while waiting for %s; log tail:\n%s", name, b.Proc.LogTail(2000))
		case <-t.C:
		}
	}
}

func (b *Ebb) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if b.Token != "" {
		req.Header.Set("Authorization", "Bearer "+b.Token)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

func get200(ctx context.Context, url string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// EbbLogFindings returns, for each ebb instance started since the last
// call, a line on the warnings and errors in its log (ebb runs at
// --log-level warn, so anything there is worth reading), with the first
// few quoted.
func (e *Env) EbbLogFindings() []string {
	e.mu.Lock()
	ebbs := e.ebbs
	e.ebbs = nil
	e.mu.Unlock()
	var out []string
	for _, p := range ebbs {
		b, err := os.ReadFile(p.Log)
		if err != nil {
			continue
		}
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
		if len(lines) == 0 {
			continue
		}
		quoted := lines[:min(3, len(lines))]
		for i, q := range quoted {
			if len(q) > 400 {
				quoted[i] = q[:400] + "…"
			}
		}
		out = append(out, fmt.Sprintf("%s logged %d line(s) at warn level or above; the first: %s", p.Name, len(lines), strings.Join(quoted, " ⏎ ")))
	}
	return out
}

// ebbUpExtraFlags turns off the listeners of `ebb up` that the scenarios do
// not use and that have fixed default addresses (several instances run at
// once): the gRPC API, when this build of ebb has it.
func (e *Env) ebbUpExtraFlags() []string {
	e.ebbFlagsOnce.Do(func() {
		help := cmdOut(e.Ebb, "up", "--help")
		if strings.Contains(help, "--grpc-addr") {
			e.ebbFlags = append(e.ebbFlags, "--grpc-addr=")
		}
	})
	return e.ebbFlags
}
