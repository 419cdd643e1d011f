package auth_test

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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/gateway/gatewaytest"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

type nopController struct{}

func (nopController) Status(string) serving.Status { return serving.Status{} }
func (nopController) Notify(string)                {}

type nopWaker struct{}

func (nopWaker) Wake(string) {}

// echoReplica starts a real replica server with the echo model serving
// deployment name.
func echoReplica(t *testing.T, name string) *balance.Endpoint {
	t.Helper()
	m, err := echo.Load("")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.New(name, m, server.Options{ReplicaID: name + "-r1"}))
	t.Cleanup(srv.Close)
	return balance.NewEndpoint(name+"-r1", srv.URL)
}

// TestOIDCEndToEnd runs OIDC tokens from a local provider, and an ebb
// token an OIDC admin created, through what ebb up serves: the admin API
// behind api.Authorize over a SQLite token store, and the gateway's auth
// stage in front of real replicas; both with one auth.ByFormat.
func TestOIDCEndToEnd(t *testing.T) {
	k := testKeys()
	e := newOIDCEnv(t, auth.OIDCOptions{}, k.rsa)
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	v := auth.NewVerifier(st, 0, nil)
	authn := auth.ByFormat{Token: v, JWT: e.o}

	h := api.New(st, nopController{}, nil)
	h.MountTokens(st, v.Forget)
	admin := httptest.NewServer(api.Authorize(h, authn))
	t.Cleanup(admin.Close)

	tab := &routing.Table{}
	for _, name := range []string{"fraud-eu", "iris"} {
		tab.Publish(routing.Route{Deployment: name, Endpoints: []*balance.Endpoint{echoReplica(t, name)}, Stats: &stats.Recorder{}})
	}
	act := activator.New(tab, nopWaker{}, activator.Options{Timeout: time.Second})
	gwURL := gatewaytest.Serve(t, gateway.New(tab, act, gateway.Options{Metrics: gateway.NewMetrics(prometheus.NewRegistry()), HoldTimeout: time.Second, Auth: authn}))

	jwtFor := func(groups ...string) string { return sign(t, k.rsa, e.claims(groups)) }
	expired := sign(t, k.rsa, e.claims([]string{"ml-admins"}, set("exp", e.clock().Add(-time.Hour).Unix())))
	none := unsigned(t, map[string]any{"alg": "none", "kid": "rsa1"}, e.claims([]string{"ml-admins"}), "")
	infer := `{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`

	do := func(t *testing.T, method, url, token, body string) (int, string, http.Header) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}

	// An OIDC admin creates an ebb token; it works beside the JWTs.
	code, body, _ := do(t, "POST", admin.URL+"/v1/tokens", jwtFor("ml-admins"), `{"name":"ci","scopes":["predict:iris"]}`)
	if code != http.StatusCreated {
		t.Fatalf("OIDC admin creating a token: %d %s", code, body)
	}
	var created api.CreatedToken
	if err := json.Unmarshal([]byte(body), &created); err != nil {
		t.Fatal(err)
	}
	if created.CreatedBy != "oidc:alice" {
		t.Errorf("token created by %q, want oidc:alice", created.CreatedBy)
	}

	tests := []struct {
		name         string
		method, url  string
		token, body  string
		want         int
		wantInBody   string
		wantWWWAuthn bool
	}{
		{"reader lists deployments", "GET", admin.URL + "/v1/deployments", jwtFor("ml-readers"), "", 200, "", false},
		{"reader cannot deploy", "POST", admin.URL + "/v1/deployments", jwtFor("ml-readers"), `{"name":"x"}`, 403, `needs scope \"deploy\"`, false},
		{"deployer cannot manage tokens", "GET", admin.URL + "/v1/tokens", jwtFor("ml-deployers"), "", 403, `needs scope \"admin\"`, false},
		{"admin lists tokens", "GET", admin.URL + "/v1/tokens", jwtFor("ml-admins"), "", 200, `"createdBy": "oidc:alice"`, false},
		{"unmapped groups on the admin API", "GET", admin.URL + "/v1/deployments", jwtFor("staff"), "", 403, `none of its groups maps to an ebb scope: its \"groups\" claim holds \"staff\"`, false},
		{"expired JWT on the admin API", "GET", admin.URL + "/v1/deployments", expired, "", 401, "expired at", true},
		{"alg none on the admin API", "GET", admin.URL + "/v1/tokens", none, "", 401, "auth/unauthenticated", true},
		{"fraud team infers on fraud-eu", "POST", gwURL + "/v2/models/fraud-eu/infer", jwtFor("team-fraud"), infer, 200, `"model_name":"fraud-eu"`, false},
		{"fraud team cannot infer on iris", "POST", gwURL + "/v2/models/iris/infer", jwtFor("team-fraud"), infer, 403, "predict:iris", false},
		{"unmapped groups at the gateway", "POST", gwURL + "/v2/models/fraud-eu/infer", jwtFor("staff", "eng"), infer, 403, `holds \"staff\", \"eng\"`, false},
		{"alg none at the gateway", "POST", gwURL + "/v2/models/fraud-eu/infer", none, infer, 401, "auth/unauthenticated", true},
		{"ebb token from the OIDC admin infers on iris", "POST", gwURL + "/v2/models/iris/infer", created.Secret, infer, 200, `"model_name":"iris"`, false},
		{"ebb token from the OIDC admin cannot infer on fraud-eu", "POST", gwURL + "/v2/models/fraud-eu/infer", created.Secret, infer, 403, "predict:fraud-eu", false},
		{"ebb token from the OIDC admin cannot read the admin API", "GET", admin.URL + "/v1/deployments", created.Secret, "", 403, "auth/forbidden", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, hdr := do(t, tt.method, tt.url, tt.token, tt.body)
			if code != tt.want || !strings.Contains(body, tt.wantInBody) {
				t.Errorf("%s %s = %d %s; want %d with %s", tt.method, tt.url, code, body, tt.want, tt.wantInBody)
			}
			if got := hdr.Get("WWW-Authenticate") != ""; got != tt.wantWWWAuthn {
				t.Errorf("WWW-Authenticate %q; want set %v", hdr.Get("WWW-Authenticate"), tt.wantWWWAuthn)
			}
		})
	}
	if d, j := e.idp.fetches(); d != 1 || j != 1 {
		t.Errorf("discovery fetched %d times, JWKS %d times; want 1 and 1 for every request", d, j)
	}
}
