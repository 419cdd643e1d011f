package main

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/home"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// newRoutesServer serves the admin API as ebb up does, route objects
// included, and returns its URL and store.
func newRoutesServer(t *testing.T) (string, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := home.NewAdminAPI(home.AdminParts{Store: st, Ctl: &cliController{statuses: map[string]serving.Status{}}, Home: api.HomeUp,
		Version: version, Routes: st}, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Setenv(serverEnv, "")
	return srv.URL, st
}

const routeManifest = `apiVersion: serving.ebb.dev/v1alpha1
kind: ModelRoute
metadata:
  name: tasks
  namespace: ebb
spec:
  match:
    input: task
  rules:
  - value: vision
    deployment: vision-model
---
name: ghosts
spec:
  match: {header: X-Team}
  default: ghost-model
`

func TestRoutesCLI(t *testing.T) {
	url, st := newRoutesServer(t)
	run := func(args ...string) (string, error) { return runEbb(t, "", append(args, "--server", url)...) }
	if _, err := st.CreateDeployment(context.Background(), serving.Deployment{Name: "iris", Spec: serving.Spec{Model: "m.json"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		wantErr string   // "" for success
		want    []string // in the output
	}{
		{"empty list", []string{"get", "routes"}, "", []string{"No routes"}},
		{"create", []string{"routes", "create", "classify", "--header", "X-Region", "--rule", "eu=classify-eu", "--rule", "us=classify-us", "--default", "classify-global"},
			"", []string{"route/classify created"}},
		{"create again", []string{"routes", "create", "classify", "--header", "X-Region", "--default", "x"}, "already exists", nil},
		{"create with a deployment's name", []string{"routes", "create", "iris", "--header", "X-Region", "--default", "x"}, `deployment "iris" exists`, nil},
		{"no match flag", []string{"routes", "create", "x", "--default", "d"}, "exactly one of --header", nil},
		{"both match flags", []string{"routes", "create", "x", "--header", "H", "--input", "i", "--default", "d"}, "exactly one of --header", nil},
		{"bad rule", []string{"routes", "create", "x", "--header", "H", "--rule", "eu"}, "VALUE=DEPLOYMENT", nil},
		{"no rule nor default", []string{"routes", "create", "x", "--header", "H"}, "at least one --rule", nil},
		{"invalid on the server", []string{"routes", "create", "x", "--header", "H", "--rule", "a=b", "--rule", "a=c"}, "values must be unique", nil},
		{"list", []string{"get", "routes"}, "", []string{"NAME", "MATCH", "classify", "header X-Region", "2", "classify-global"}},
		{"list under routes", []string{"routes", "get"}, "", []string{"classify"}},
		{"show one", []string{"get", "route", "classify"}, "", []string{"Match:       header X-Region", "VALUE", "eu", "classify-eu", "classify-us"}},
		{"yaml", []string{"get", "route", "classify", "-o", "yaml"}, "", []string{"name: classify", "deployment: classify-eu", "generation: 1"}},
		{"apply", []string{"routes", "apply", "-f", writeFile(t, "routes.yaml", routeManifest)}, "", []string{"route/tasks created", "route/ghosts created"}},
		{"apply again", []string{"routes", "apply", "-f", writeFile(t, "routes.yaml", routeManifest)}, "", []string{"route/tasks configured"}},
		{"apply a deployment", []string{"routes", "apply", "-f", writeFile(t, "d.yaml", "kind: ModelDeployment\nmetadata: {name: x}\nspec: {}\n")}, "not a route", nil},
		{"watch", []string{"get", "routes", "-w"}, "--watch follows deployments", nil},
		{"delete", []string{"routes", "delete", "tasks"}, "", []string{"route/tasks deleted"}},
		{"delete route", []string{"delete", "route", "ghosts"}, "", []string{"route/ghosts deleted"}},
		{"delete missing", []string{"delete", "route", "ghosts"}, "not found", nil},
		{"unknown resource", []string{"delete", "widget", "x"}, "ebb delete route NAME", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ebb %s = %v\n%s\nwant an error with %q", strings.Join(tt.args, " "), err, out, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ebb %s: %v\n%s", strings.Join(tt.args, " "), err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("ebb %s printed\n%s\nwant it to contain %q", strings.Join(tt.args, " "), out, w)
				}
			}
		})
	}
	r, err := st.GetRoute(context.Background(), "classify")
	if err != nil || r.Spec.Default != "classify-global" || len(r.Spec.Rules) != 2 || r.Spec.Rules[1] != (serving.RouteRule{Value: "us", Deployment: "classify-us"}) {
		t.Errorf("stored route = %+v, %v", r, err)
	}
}

func TestRouteDocs(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		names   []string
		wantErr string
	}{
		{"ebb's form", "name: a\nspec: {match: {header: H}, default: d}\n", []string{"a"}, ""},
		{"json", `{"name":"a","spec":{"default":"d"}}`, []string{"a"}, ""},
		{"manifest and form", routeManifest, []string{"tasks", "ghosts"}, ""},
		{"empty", "# nothing\n", nil, "holds no route"},
		{"no name", "spec: {}\n", nil, "name is required"},
		{"manifest without name", "kind: ModelRoute\nmetadata: {}\nspec: {}\n", nil, "metadata.name is required"},
		{"manifest without spec", "kind: ModelRoute\nmetadata: {name: a}\n", nil, "spec is required"},
		{"other version", "apiVersion: v1\nkind: ModelRoute\nmetadata: {name: a}\nspec: {}\n", nil, "is not serving.ebb.dev/v1alpha1"},
		{"not a mapping", "- a\n", nil, "must hold one route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := routeDocs([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("routeDocs = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, d := range docs {
				names = append(names, d.name)
				if !strings.Contains(string(d.body), `"spec"`) || !strings.Contains(string(d.body), `"name":"`+d.name+`"`) {
					t.Errorf("body %s is not {name, spec}", d.body)
				}
			}
			if strings.Join(names, ",") != strings.Join(tt.names, ",") {
				t.Errorf("names = %q, want %q", names, tt.names)
			}
		})
	}
}

// TestUpShardsFollowAdminAPI checks ebb up's wiring: a route the admin API
// writes is in the gateway's table when the API answers, and a deleted one
// is gone.
func TestUpShardsFollowAdminAPI(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	shards := newUpShards(st, slog.New(slog.DiscardHandler))
	h := home.NewAdminAPI(home.AdminParts{Store: st, Ctl: &cliController{statuses: map[string]serving.Status{}}, Home: api.HomeUp,
		Routes: st, RoutesChanged: shards.changed}, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Setenv(serverEnv, "")
	if _, err := runEbb(t, "", "routes", "create", "classify", "--header", "X-Region", "--default", "global", "--server", srv.URL); err != nil {
		t.Fatal(err)
	}
	if sh := shards.table.Lookup("classify"); sh == nil || sh.Default != "global" {
		t.Fatalf("after create, the table has %+v; want the route", sh)
	}
	if _, err := runEbb(t, "", "delete", "route", "classify", "--server", srv.URL); err != nil {
		t.Fatal(err)
	}
	if sh := shards.table.Lookup("classify"); sh != nil {
		t.Errorf("after delete, the table still has %+v", sh)
	}
}
