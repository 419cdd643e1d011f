package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// failingShadows answers every call with err, to check how the API maps
// the manager's errors about shadows.
type failingShadows struct{ err error }

func (f failingShadows) StartShadow(context.Context, string, rollout.ShadowRequest, string) (rollout.ShadowStatus, error) {
	return rollout.ShadowStatus{}, f.err
}
func (f failingShadows) ShadowStatus(context.Context, string, rollout.ShadowCriteria) (rollout.ShadowStatus, error) {
	return rollout.ShadowStatus{}, f.err
}
func (f failingShadows) StopShadow(context.Context, string, string) (rollout.ShadowStatus, error) {
	return rollout.ShadowStatus{}, f.err
}

// send sends one request to srv and returns the status and body.
func send(t *testing.T, srv *httptest.Server, token, method, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestShadowErrors(t *testing.T) {
	const path = "/v1/deployments/m/shadow"
	tests := []struct {
		err      error
		method   string
		path     string
		body     string
		wantCode int
		wantErr  string
	}{
		{fmt.Errorf("%w: inputs differ", rollout.ErrInvalid), "POST", path, `{"to":"/models/b.json"}`, 400, "shadow/invalid"},
		{fmt.Errorf("%w: a rollout is on", rollout.ErrActive), "POST", path, `{"to":"/models/b.json"}`, 409, "rollout/active"},
		{fmt.Errorf("get: %w", store.ErrNotFound), "POST", path, `{"to":"/models/b.json"}`, 404, "deployment/not_found"},
		{fmt.Errorf("%w: none", rollout.ErrNoShadow), "GET", path, "", 404, "shadow/not_found"},
		{fmt.Errorf("%w: min agreement 7", rollout.ErrInvalid), "GET", path + "?minAgreement=7", "", 400, "shadow/invalid"},
		{fmt.Errorf("%w: none", rollout.ErrNoShadow), "DELETE", path, "", 404, "shadow/not_found"},
		{nil, "POST", path, `{"to":"/models/b.json","percnt":5}`, 400, "request/malformed"},
		{nil, "POST", path, `{"to":"/models/b.json","duration":"soon"}`, 400, "request/malformed"},
		{nil, "POST", "/v1/deployments/nope/shadow", `{"to":"/models/b.json"}`, 404, "deployment/not_found"},
		{nil, "GET", path + "?minAgreement=most", "", 400, "request/malformed"},
		{nil, "GET", path + "?minRequests=1.5", "", 400, "request/malformed"},
		{nil, "PUT", path, `{}`, 405, "request/method_not_allowed"},
		// A rollout that requires a shadow's verdict it does not get.
		{fmt.Errorf("%w: pending", rollout.ErrShadowUnmet), "POST", "/v1/deployments/m/rollout", `{"to":"/models/b.json","requireShadow":{"minAgreement":0.99}}`, 412, "rollout/shadow_unmet"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+fmt.Sprint(tt.err), func(t *testing.T) {
			_, h := rolloutAPI(t)
			h.MountShadows(failingShadows{err: cmpErr(tt.err)})
			h.MountRollouts(failingRollouts{err: cmpErr(tt.err)})
			srv := httptest.NewServer(h)
			defer srv.Close()
			code, body := send(t, srv, "", tt.method, tt.path, tt.body)
			if code != tt.wantCode || !strings.Contains(body, `"`+tt.wantErr+`"`) {
				t.Fatalf("= %d %s; want %d %s", code, body, tt.wantCode, tt.wantErr)
			}
		})
	}
}

// fixedShadows is a gateway that reports the same figures for every
// deployment's shadow of model (as the current shadow's, by its ID, when
// the stored spec's shadow serves model).
type fixedShadows struct {
	model string
	sum   traffic.Summary
	spec  func(deployment string) *serving.Shadow
}

func (f fixedShadows) ShadowSummary(deployment string) (traffic.Summary, string, bool) {
	if sh := f.spec(deployment); sh != nil && sh.Model == f.model {
		return f.sum, sh.ID(), true
	}
	return f.sum, "earlier", f.model != ""
}

// storedShadow reads a deployment's spec.shadow from st.
func storedShadow(st interface {
	GetDeployment(context.Context, string) (serving.Deployment, error)
}) func(string) *serving.Shadow {
	return func(name string) *serving.Shadow {
		d, err := st.GetDeployment(context.Background(), name)
		if err != nil {
			return nil
		}
		return d.Spec.Shadow
	}
}

func TestShadowRoutes(t *testing.T) {
	st, h := rolloutAPI(t)
	src := fixedShadows{model: "/models/b.json", sum: traffic.Summary{Compared: 200, Agreed: 150, Agreement: 0.75, LatencyRatio: 1.5,
		Samples: []traffic.Sample{{Input: `{"inputs":[]}`, Primary: "1", Shadow: "2", Diff: traffic.Result{Tensor: "y", Reason: "differs"}}}}}
	src.spec = storedShadow(st)
	h.MountShadows(rollout.New(st, st, nil, rollout.Options{Shadows: src}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	const path = "/v1/deployments/m/shadow"

	if code, body := send(t, srv, "", "GET", path, ""); code != 404 || !strings.Contains(body, "ebb shadow start m --to MODEL") {
		t.Fatalf("GET before a start = %d %s; want 404 saying how to start one", code, body)
	}
	code, body := send(t, srv, "", "POST", path, `{"to":"/models/b.json","percent":50,"requests":300,"tolerance":{"abs":0.01,"rel":0.001},"maxConcurrency":2}`)
	if code != 201 {
		t.Fatalf("POST = %d %s; want 201", code, body)
	}
	d, err := st.GetDeployment(context.Background(), "m")
	if err != nil {
		t.Fatal(err)
	}
	if sh := d.Spec.Shadow; sh == nil || sh.Model != "/models/b.json" || sh.Percent != 50 || sh.Requests != 300 || sh.MaxConcurrency != 2 || *sh.Tolerance != (serving.Tolerance{Abs: 0.01, Rel: 0.001}) {
		t.Fatalf("spec.shadow = %+v", d.Spec.Shadow)
	}

	// The status flattens the gateway's figures beside the verdict.
	code, body = send(t, srv, "", "GET", path, "")
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil {
		t.Fatalf("GET = %d %s (%v)", code, body, err)
	}
	for _, k := range []string{"compared", "agreement", "shadowErrors", "latencyRatio", "dropped", "verdict", "samples", "noiseAgreement", "active", "model", "percent"} {
		if _, ok := got[k]; !ok {
			t.Errorf("status lacks %q: %s", k, body)
		}
	}
	var st1 rollout.ShadowStatus
	json.Unmarshal([]byte(body), &st1)
	if st1.Compared != 200 || st1.Verdict.Outcome != traffic.Pending || st1.Criteria.MinRequests != 300 {
		t.Errorf("status = %+v; want 200 compared, pending on the shadow's 300 requests", st1)
	}
	// Criteria in the query judge the same figures.
	_, body = send(t, srv, "", "GET", path+"?minAgreement=0.7&minRequests=100", "")
	json.Unmarshal([]byte(body), &st1)
	if st1.Verdict.Outcome != traffic.Pass || st1.Criteria != (rollout.ShadowCriteria{MinAgreement: 0.7, MinRequests: 100}) {
		t.Errorf("status judged by the query = %+v, %+v; want a pass by 0.7 over 100", st1.Verdict, st1.Criteria)
	}

	code, body = send(t, srv, "", "DELETE", path, "")
	if json.Unmarshal([]byte(body), &st1); code != 200 || st1.Active || st1.Compared != 200 {
		t.Errorf("DELETE = %d %s; want the last figures, inactive", code, body)
	}
	if d, _ := st.GetDeployment(context.Background(), "m"); d.Spec.Shadow != nil {
		t.Errorf("spec.shadow = %+v after DELETE", d.Spec.Shadow)
	}
	if code, body := send(t, srv, "", "DELETE", path, ""); code != 404 {
		t.Errorf("second DELETE = %d %s; want 404", code, body)
	}
}

// TestShadowScopes: reading a shadow needs read; starting and stopping
// one need deploy, and a shadow that runs code needs exec, as a rollout's
// target does; a shadow's model path is confined as spec.model is.
func TestShadowScopes(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	root := t.TempDir()
	for _, f := range []string{"a.json", "b.json", "m.py"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []serving.Deployment{
		{Name: "trees", Spec: serving.Spec{Model: filepath.Join(root, "a.json"), Engine: "trees"}},
		{Name: "py", Spec: serving.Spec{Model: filepath.Join(root, "a.json"), Engine: "python", Python: &serving.Python{Class: "m.py:M"}}},
	} {
		d.Spec.Default()
		if _, err := st.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	v := auth.NewVerifier(st, 0, nil)
	h := api.New(st, &fakeController{statuses: map[string]serving.Status{}}, nil)
	h.ConfineModelPaths(api.ModelPaths{Roots: []string{root}})
	h.MountShadows(rollout.New(st, st, nil, rollout.Options{}))
	srv := httptest.NewServer(api.Authorize(h, v))
	t.Cleanup(srv.Close)
	e := &authEnv{st: st, srv: srv, tokens: map[string]string{}}
	for _, set := range []string{"read", "deploy", "deploy,exec"} {
		e.tokens[set] = e.token(t, strings.Split(set, ",")...)
	}
	b := filepath.Join(root, "b.json")
	to := func(model string) string { return `{"to":"` + model + `"}` }
	tests := []struct {
		name, token, method, path, body string
		want                            int
		wantMsg                         string
	}{
		{"read starts", "read", "POST", "/v1/deployments/trees/shadow", to(b), 403, "--scope deploy"},
		{"read reads", "read", "GET", "/v1/deployments/trees/shadow", "", 404, "shadow/not_found"},
		{"deploy starts trees", "deploy", "POST", "/v1/deployments/trees/shadow", to(b), 201, ""},
		{"read stops", "read", "DELETE", "/v1/deployments/trees/shadow", "", 403, "--scope deploy"},
		{"deploy stops", "deploy", "DELETE", "/v1/deployments/trees/shadow", "", 200, ""},
		{"deploy starts code", "deploy", "POST", "/v1/deployments/py/shadow", to(b), 403, `exec`},
		{"deploy shadows code with itself", "deploy", "POST", "/v1/deployments/py/shadow", to(filepath.Join(root, "a.json")), 201, ""},
		{"exec starts code", "deploy,exec", "POST", "/v1/deployments/py/shadow", to(b), 201, ""},
		{"outside the roots", "deploy,exec", "POST", "/v1/deployments/trees/shadow", to("/etc/passwd"), 400, "shadow/invalid"},
		{"missing", "deploy,exec", "POST", "/v1/deployments/trees/shadow", to(filepath.Join(root, "nope.json")), 400, "does not exist on the server"},
		// A deployment write that sets spec.shadow is confined alike.
		{"put outside the roots", "deploy,exec", "PUT", "/v1/deployments/trees",
			`{"spec":{"model":"` + filepath.Join(root, "a.json") + `","engine":"trees","shadow":{"model":"/etc/passwd"}}}`, 400, "is outside the directories"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := send(t, srv, e.tokens[tt.token], tt.method, tt.path, tt.body)
			if code != tt.want || !strings.Contains(body, tt.wantMsg) {
				t.Fatalf("%s %s with %s = %d %s; want %d with %q", tt.method, tt.path, tt.token, code, body, tt.want, tt.wantMsg)
			}
		})
	}
}
