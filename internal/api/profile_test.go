package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/examples/diabetes"
	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// diabetesProfile is a profile of n numeric inputs x0.. and a numeric
// output "predict".
func diabetesProfile(t *testing.T, n int) *monitor.Profile {
	t.Helper()
	var specs []monitor.Spec
	for i := range n {
		specs = append(specs, monitor.Spec{Name: fmt.Sprintf("x%d", i), Kind: monitor.Numeric})
	}
	specs = append(specs, monitor.Spec{Name: "predict", Kind: monitor.Numeric, Output: true})
	rows := make([]monitor.Row, 200)
	for r := range rows {
		for j := 0; j <= n; j++ {
			rows[r].Num = append(rows[r].Num, float64(r*(j+1)%37))
		}
	}
	p, err := monitor.BuildProfile(specs, rows, monitor.ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProfileRoutes(t *testing.T) {
	e := newModelsEnv(t)
	if code, body := e.upload(t, "diabetes", "model.json", diabetes.Model, api.PushMetadata{}); code != http.StatusCreated {
		t.Fatalf("push: %d %s", code, body)
	}
	const path = "/v1/models/diabetes/versions/1/profile"
	good, _ := json.Marshal(diabetesProfile(t, 10))
	narrow, _ := json.Marshal(diabetesProfile(t, 3))
	steps := []struct {
		name, method, path, body string
		wantCode                 int
		wantIn                   string
	}{
		{"none yet", "GET", path, "", http.StatusNotFound, `"profile/not_found"`},
		{"set", "PUT", path, string(good), http.StatusOK, `"ebb.profile.sha256"`},
		{"read back", "GET", path, "", http.StatusOK, `"name": "x9"`},
		{"columns do not fit the signature", "PUT", path, string(narrow), http.StatusBadRequest, `has 10 columns but the profile has 3 input features`},
		{"not a profile", "PUT", path, `{"features": 3}`, http.StatusBadRequest, `"model/invalid"`},
		{"unknown field", "PUT", path, `{"version": 1, "rows": 1, "features": [], "extra": 1}`, http.StatusBadRequest, `unknown field`},
		{"other profile version", "PUT", path, `{"version": 7, "rows": 1, "features": []}`, http.StatusBadRequest, `this ebb reads version 1`},
		{"not JSON", "PUT", path, `{`, http.StatusBadRequest, `"request/malformed"`},
		{"missing version", "PUT", "/v1/models/diabetes/versions/9/profile", string(good), http.StatusNotFound, `"version/not_found"`},
		{"missing model", "GET", "/v1/models/nope/versions/1/profile", "", http.StatusNotFound, `"model/not_found"`},
		{"bad version", "GET", "/v1/models/diabetes/versions/x/profile", "", http.StatusBadRequest, `positive whole number`},
		{"method", "POST", path, "{}", http.StatusMethodNotAllowed, `"request/method_not_allowed"`},
		{"delete", "DELETE", path, "", http.StatusNoContent, ""},
		{"gone", "GET", path, "", http.StatusNotFound, `ebb models profile diabetes:1 --data`},
		{"delete again", "DELETE", path, "", http.StatusNotFound, `"profile/not_found"`},
	}
	for _, s := range steps {
		code, _, body := e.do(t, s.method, s.path, "application/json", s.body)
		if code != s.wantCode || !strings.Contains(string(body), s.wantIn) {
			t.Errorf("%s: %s %s = %d %s; want %d with %s", s.name, s.method, s.path, code, body, s.wantCode, s.wantIn)
		}
		if s.name == "read back" {
			var p monitor.Profile
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(diabetesProfile(t, 10), &p); diff != "" {
				t.Errorf("profile read back (-put +got):\n%s", diff)
			}
		}
	}
	v, err := e.svc.Store().GetVersion(t.Context(), "diabetes", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Tags[registry.TagProfile]; ok {
		t.Errorf("tags after delete: %v; want no profile", v.Tags)
	}
}

// Writing a profile needs the models:write scope, as a push does.
func TestProfileRouteAction(t *testing.T) {
	for method, want := range map[string]auth.Action{"GET": auth.Read, "PUT": auth.ModelsWrite, "DELETE": auth.ModelsWrite} {
		if got := api.RouteAction(method, "/v1/models/m/versions/1/profile"); got != want {
			t.Errorf("%s profile needs %v; want %v", method, got, want)
		}
	}
}

type fakeDrift map[string][]monitor.VersionReport

func (f fakeDrift) Reports(deployment string) []monitor.VersionReport { return f[deployment] }

func TestDriftRoute(t *testing.T) {
	reports := fakeDrift{"watched": {{Version: "m:3", ProfileID: "abc", ProfileRows: 100, Report: monitor.Report{Rows: 7,
		Features: []monitor.FeatureScore{{Feature: "x", Kind: monitor.Numeric, Count: 7, PSI: 0.3, Status: monitor.StatusDrift}}, Status: monitor.StatusDrift}}}}
	e := newEnvWith(t, func(h *api.Handler, _ *sqlite.Store) { h.MountDrift(reports) })
	for _, name := range []string{"watched", "plain"} {
		if _, err := e.st.CreateDeployment(t.Context(), serving.Deployment{Name: name, Spec: serving.Spec{Model: "m:3", Scaling: serving.Scaling{MaxReplicas: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		method, path string
		wantCode     int
		want         *api.DriftReport
	}{
		{"GET", "/v1/deployments/watched/drift", http.StatusOK, &api.DriftReport{Deployment: "watched", Versions: reports["watched"]}},
		{"GET", "/v1/deployments/plain/drift", http.StatusOK, &api.DriftReport{Deployment: "plain", Versions: []monitor.VersionReport{}}},
		{"GET", "/v1/deployments/nope/drift", http.StatusNotFound, nil},
		{"POST", "/v1/deployments/watched/drift", http.StatusMethodNotAllowed, nil},
	}
	for _, tt := range tests {
		code, _, body := e.do(t, tt.method, tt.path, "application/json", "")
		if code != tt.wantCode {
			t.Errorf("%s %s = %d %s; want %d", tt.method, tt.path, code, body, tt.wantCode)
			continue
		}
		if tt.want == nil {
			continue
		}
		var got api.DriftReport
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(*tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.path, diff)
		}
	}
}
