package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// newLimitsEnv is newEnv with the tenant limits mounted; changes counts
// the calls that tell the gateway of a change.
func newLimitsEnv(t *testing.T) (*env, *atomic.Int32) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	ctl := &fakeController{statuses: map[string]serving.Status{}}
	h := api.New(st, ctl, nil)
	changes := &atomic.Int32{}
	h.MountLimits(st, func(context.Context) { changes.Add(1) })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{st: st, ctl: ctl, srv: srv}, changes
}

func TestLimitsAPI(t *testing.T) {
	e, changes := newLimitsEnv(t)
	const json = "application/json"
	tests := []struct {
		name         string
		method, path string
		body         string
		want         int
		contains     []string
		changed      bool // the gateway is told
	}{
		{"list empty", "GET", "/v1/limits", "", 200, []string{`"items": []`}, false},
		{"create", "PUT", "/v1/limits/acme", `{"rate":10,"burst":20}`, 201,
			[]string{`"tenant": "acme"`, `"rate": 10`, `"burst": 20`, `"generation": 1`, `"createdAt"`}, true},
		{"replace: the burst defaults", "PUT", "/v1/limits/acme", `{"rate":2.5}`, 200, []string{`"rate": 2.5`, `"burst": 3`, `"generation": 2`}, true},
		{"get", "GET", "/v1/limits/acme", "", 200, []string{`"rate": 2.5`}, false},
		{"a deployment's", "PUT", "/v1/limits/acme/deployments/diabetes", `{"concurrency":5,"share":3}`, 201,
			[]string{`"deployment": "diabetes"`, `"concurrency": 5`, `"share": 3`}, true},
		{"the default", "PUT", "/v1/limits/*", `{"concurrency":1}`, 201, []string{`"tenant": "*"`}, true},
		{"an escaped tenant", "PUT", "/v1/limits/team%2Feu@x", `{"rate":1}`, 201, []string{`"tenant": "team/eu@x"`}, true},
		{"an exemption", "PUT", "/v1/limits/free", `{}`, 201, []string{`"tenant": "free"`}, true},
		{"send back what GET gave", "PUT", "/v1/limits/acme/deployments/diabetes",
			`{"tenant":"acme","deployment":"diabetes","concurrency":6,"generation":1,"createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z"}`,
			200, []string{`"concurrency": 6`, `"generation": 2`}, true},
		{"list", "GET", "/v1/limits", "", 200, []string{`"tenant": "*"`, `"deployment": "diabetes"`, `"tenant": "team/eu@x"`}, false},
		{"bad bounds", "PUT", "/v1/limits/acme", `{"rate":-1,"burst":2000000,"concurrency":-3,"share":5000}`, 400,
			[]string{"limit/invalid", "rate: is -1", "burst: is 2000000", "concurrency: is -3", "share: is 5000"}, false},
		{"burst without rate", "PUT", "/v1/limits/acme", `{"burst":3}`, 400, []string{"burst: is set without a rate"}, false},
		{"rate too slow", "PUT", "/v1/limits/acme", `{"rate":0.0001}`, 400, []string{"at least 0.001"}, false},
		{"bad tenant", "PUT", "/v1/limits/a%20b", `{"rate":1}`, 400, []string{"limit/invalid", `tenant: \"a b\" is not a tenant name`}, false},
		{"long tenant", "PUT", "/v1/limits/" + strings.Repeat("t", 129), `{"rate":1}`, 400, []string{"tenant: is 129 characters long"}, false},
		{"bad deployment", "PUT", "/v1/limits/acme/deployments/Bad_Name", `{"rate":1}`, 400, []string{`deployment: \"Bad_Name\" is not a deployment name`}, false},
		{"unknown field", "PUT", "/v1/limits/acme", `{"rps":3}`, 400, []string{"limit/invalid", "rps: unknown field"}, false},
		{"wrong type", "PUT", "/v1/limits/acme", `{"burst":1.5}`, 400, []string{"burst: must be an integer"}, false},
		{"body names another tenant", "PUT", "/v1/limits/acme", `{"tenant":"other","rate":1}`, 400,
			[]string{`tenant: \"other\" in the body does not match \"acme\" in the URL`}, false},
		{"a deployment's body at the tenant's URL", "PUT", "/v1/limits/acme", `{"tenant":"acme","deployment":"diabetes","rate":1}`, 400,
			[]string{"deployment: \\\"diabetes\\\" in the body does not match \\\"\\\" in the URL"}, false},
		{"not JSON", "PUT", "/v1/limits/acme", `rate=1`, 400, []string{"request/malformed"}, false},
		{"missing", "GET", "/v1/limits/nobody", "", 404, []string{"limit/not_found", `tenant \"nobody\"`}, false},
		{"missing on a deployment", "GET", "/v1/limits/acme/deployments/iris", "", 404, []string{`tenant \"acme\" on deployment \"iris\"`}, false},
		{"delete", "DELETE", "/v1/limits/acme/deployments/diabetes", "", 204, nil, true},
		{"delete again", "DELETE", "/v1/limits/acme/deployments/diabetes", "", 404, []string{"limit/not_found"}, false},
		{"the tenant-wide one stays", "GET", "/v1/limits/acme", "", 200, []string{`"rate": 2.5`}, false},
		{"POST", "POST", "/v1/limits", `{}`, 405, []string{"request/method_not_allowed"}, false},
		{"PATCH", "PATCH", "/v1/limits/acme", `{}`, 405, []string{"DELETE, GET, HEAD, PUT"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := changes.Load()
			ct := ""
			if tt.body != "" {
				ct = json
			}
			code, hdr, b := e.do(t, tt.method, tt.path, ct, tt.body)
			if code != tt.want {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, code, b, tt.want)
			}
			for _, c := range tt.contains {
				if !strings.Contains(string(b), c) {
					t.Errorf("%s %s answered\n%s\nwant it to contain %s", tt.method, tt.path, b, c)
				}
			}
			if loc, _ := url.PathUnescape(hdr.Get("Location")); code == 201 && loc != unescape(tt.path) {
				t.Errorf("Location = %q, want %q", hdr.Get("Location"), tt.path)
			}
			if got := changes.Load() != before; got != tt.changed {
				t.Errorf("gateway told of a change: %v, want %v", got, tt.changed)
			}
		})
	}
	got, err := e.st.ListLimits(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, l := range got {
		keys = append(keys, l.Tenant+"/"+l.Deployment)
	}
	if want := "*/ acme/ free/ team/eu@x/"; strings.Join(keys, " ") != want {
		t.Errorf("stored limits = %q, want %q", strings.Join(keys, " "), want)
	}
}

func unescape(p string) string {
	s, _ := url.PathUnescape(p)
	return s
}

// TestLimitsETag checks the conditional GET that gateways poll with.
func TestLimitsETag(t *testing.T) {
	e, _ := newLimitsEnv(t)
	get := func(inm string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.srv.URL+"/v1/limits", nil)
		if inm != "" {
			req.Header.Set("If-None-Match", inm)
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("ETag"), string(b)
	}
	code, first, body := get("")
	if code != 200 || !strings.HasPrefix(first, `"`) || !strings.Contains(body, `"items"`) {
		t.Fatalf("GET = %d, ETag %q, %s; want 200, a strong ETag and the list", code, first, body)
	}
	tests := []struct {
		inm  string
		want int
	}{
		{first, 304}, {"W/" + first, 304}, {`"other", ` + first, 304}, {"*", 304}, {`"other"`, 200},
	}
	for _, tt := range tests {
		code, etag, body := get(tt.inm)
		if code != tt.want || etag != first || (code == 304) != (body == "") {
			t.Errorf("GET with If-None-Match %s = %d, ETag %q, %q; want %d, %q, a body only with 200", tt.inm, code, etag, body, tt.want, first)
		}
	}
	if code, _, b := e.do(t, "PUT", "/v1/limits/acme", "application/json", `{"rate":1}`); code != 201 {
		t.Fatalf("PUT = %d %s", code, b)
	}
	code, next, _ := get(first)
	if code != 200 || next == first || next == "" {
		t.Errorf("GET after a change with the old ETag = %d, ETag %q; want 200 and a new ETag", code, next)
	}
	if code, _, _ := get(next); code != 304 {
		t.Errorf("GET with the new ETag = %d, want 304", code)
	}
}

// TestLimitsNeedAdmin checks the scopes of the limit routes.
func TestLimitsNeedAdmin(t *testing.T) {
	tests := []struct {
		method, path string
		want         auth.Action
	}{
		{"GET", "/v1/limits", auth.Read},
		{"GET", "/v1/limits/acme/deployments/d", auth.Read},
		{"PUT", "/v1/limits/acme", auth.Admin},
		{"PUT", "/v1/limits/acme/deployments/d", auth.Admin},
		{"DELETE", "/v1/limits/acme", auth.Admin},
	}
	for _, tt := range tests {
		if got := api.RouteAction(tt.method, tt.path); got != tt.want {
			t.Errorf("RouteAction(%s %s) = %v, want %v", tt.method, tt.path, got, tt.want)
		}
	}
}
