package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// newRoutesEnv is newEnv with the route objects mounted; changes counts
// the calls that tell the gateway of a change.
func newRoutesEnv(t *testing.T) (*env, *atomic.Int32) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	ctl := &fakeController{statuses: map[string]serving.Status{}}
	h := api.New(st, ctl, nil)
	changes := &atomic.Int32{}
	h.MountRoutes(st, func(context.Context) { changes.Add(1) })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{st: st, ctl: ctl, srv: srv}, changes
}

const regionRoute = `{"name":"classify","spec":{"match":{"header":"X-Region"},"rules":[{"value":"eu","deployment":"classify-eu"}],"default":"classify-global"}}`

func TestRoutesAPI(t *testing.T) {
	e, changes := newRoutesEnv(t)
	const json = "application/json"
	if code, _, b := e.do(t, "POST", "/v1/deployments", json, `{"name":"iris","spec":{"model":"m.json"}}`); code != 201 {
		t.Fatalf("create deployment iris: %d %s", code, b)
	}
	tests := []struct {
		name         string
		method, path string
		body         string
		want         int
		contains     []string
		changed      bool // the gateway is told
	}{
		{"list empty", "GET", "/v1/routes", "", 200, []string{`"items": []`}, false},
		{"create", "POST", "/v1/routes", regionRoute, 201, []string{`"generation": 1`, `"classify-eu"`}, true},
		{"create again", "POST", "/v1/routes", regionRoute, 409, []string{"route/exists"}, false},
		{"name of a deployment", "POST", "/v1/routes", strings.Replace(regionRoute, `"classify"`, `"iris"`, 1), 409,
			[]string{"route/name_taken", `deployment \"iris\" exists`}, false},
		{"deployment named as a route", "POST", "/v1/deployments", `{"name":"classify","spec":{"model":"m.json"}}`, 409,
			[]string{"route/name_taken", `route \"classify\" exists`}, false},
		{"deployment PUT named as a route", "PUT", "/v1/deployments/classify", `{"spec":{"model":"m.json"}}`, 409,
			[]string{"route/name_taken"}, false},
		{"invalid", "POST", "/v1/routes", `{"name":"bad","spec":{"match":{},"rules":[{"value":"a","deployment":"x"},{"value":"a","deployment":"y"}]}}`, 400,
			[]string{"route/invalid", "spec.match", `spec.rules[1].value: \"a\" is the value of spec.rules[0] too`}, false},
		{"neither rule nor default", "POST", "/v1/routes", `{"name":"empty","spec":{"match":{"header":"X-A"}}}`, 400,
			[]string{"at least one rule"}, false},
		{"unknown field", "POST", "/v1/routes", `{"name":"x","spec":{"match":{"header":"X-A"},"default":"d","rulez":[]}}`, 400,
			[]string{"request/malformed", "rulez"}, false},
		{"get", "GET", "/v1/routes/classify", "", 200, []string{`"default": "classify-global"`}, false},
		{"get missing", "GET", "/v1/routes/nope", "", 404, []string{"route/not_found"}, false},
		{"list", "GET", "/v1/routes", "", 200, []string{`"name": "classify"`}, false},
		{"replace", "PUT", "/v1/routes/classify", `{"spec":{"match":{"input":"task"},"default":"classify-global"}}`, 200,
			[]string{`"generation": 2`, `"input": "task"`}, true},
		{"replace with what GET returned", "PUT", "/v1/routes/classify",
			`{"name":"classify","generation":2,"createdAt":"2020-01-01T00:00:00Z","spec":{"match":{"input":"task"},"default":"classify-global"}}`, 200,
			[]string{`"generation": 2`}, true},
		{"PUT creates", "PUT", "/v1/routes/tasks", `{"spec":{"match":{"input":"task"},"rules":[{"value":"vision","deployment":"vision-model"}]}}`, 201,
			[]string{`"name": "tasks"`}, true},
		{"PUT of a deployment's name", "PUT", "/v1/routes/iris", `{"spec":{"match":{"input":"task"},"default":"x"}}`, 409,
			[]string{"route/name_taken"}, false},
		{"PUT name mismatch", "PUT", "/v1/routes/tasks", `{"name":"other","spec":{"match":{"input":"task"},"default":"x"}}`, 400,
			[]string{"does not match"}, false},
		{"delete", "DELETE", "/v1/routes/tasks", "", 204, nil, true},
		{"delete missing", "DELETE", "/v1/routes/tasks", "", 404, []string{"route/not_found"}, false},
		{"method", "PATCH", "/v1/routes/classify", "{}", 405, []string{"request/method_not_allowed"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := changes.Load()
			code, _, b := e.do(t, tt.method, tt.path, json, tt.body)
			if code != tt.want {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, code, b, tt.want)
			}
			for _, c := range tt.contains {
				if !strings.Contains(string(b), c) {
					t.Errorf("answer %s does not contain %s", b, c)
				}
			}
			if got := changes.Load() != before; got != tt.changed {
				t.Errorf("gateway told of a change: %v, want %v", got, tt.changed)
			}
		})
	}
}

// TestRoutesNeedDeploy checks the scopes of the route object routes.
func TestRoutesNeedDeploy(t *testing.T) {
	tests := []struct {
		method, path string
		want         auth.Action
	}{
		{"GET", "/v1/routes", auth.Read},
		{"GET", "/v1/routes/classify", auth.Read},
		{"POST", "/v1/routes", auth.Deploy},
		{"PUT", "/v1/routes/classify", auth.Deploy},
		{"DELETE", "/v1/routes/classify", auth.Deploy},
		{"POST", "/v1/routesx", auth.Admin},
	}
	for _, tt := range tests {
		if got := api.RouteAction(tt.method, tt.path); got != tt.want {
			t.Errorf("RouteAction(%s %s) = %v, want %v", tt.method, tt.path, got, tt.want)
		}
	}
}

// TestRoutesWithoutMount checks that a handler without route objects
// neither serves them nor refuses deployments for them.
func TestRoutesWithoutMount(t *testing.T) {
	e := newEnv(t)
	if code, _, b := e.do(t, "GET", "/v1/routes", "", ""); code != http.StatusNotFound {
		t.Errorf("GET /v1/routes without MountRoutes = %d %s, want 404", code, b)
	}
	if code, _, b := e.do(t, "POST", "/v1/deployments", "application/json", `{"name":"classify","spec":{"model":"m.json"}}`); code != 201 {
		t.Errorf("create deployment = %d %s, want 201", code, b)
	}
}
