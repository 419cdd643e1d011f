package api_test

import (
	"net/http"
	"testing"

	"github.com/ebb-ml/ebb/examples/diabetes"
	"github.com/ebb-ml/ebb/internal/api"
)

// A deployment that names a registry version which does not resolve is
// refused at once with a 400 that says how to fix it, and nothing is
// stored; one that resolves is created.
func TestDeploymentModelRefsAreChecked(t *testing.T) {
	e := newModelsEnv(t)
	if code, body := e.upload(t, "diabetes", "model.json", diabetes.Model, api.PushMetadata{Alias: "champion"}); code != http.StatusCreated {
		t.Fatalf("push = %d %s", code, body)
	}
	for _, tc := range []struct {
		name, method, path, body string
		wantStatus               int
		wantMsg                  string
	}{
		{"unknown model", "POST", "/v1/deployments", `{"name":"a","spec":{"model":"nope@champion"}}`,
			400, "nope@champion is not in the registry"},
		{"unknown alias", "POST", "/v1/deployments", `{"name":"b","spec":{"model":"diabetes@staging"}}`,
			400, "push it first"},
		{"unknown version", "PUT", "/v1/deployments/c", `{"spec":{"model":"diabetes:7"}}`,
			400, "diabetes:7 is not in the registry"},
		{"engine mismatch", "POST", "/v1/deployments", `{"name":"d","spec":{"model":"diabetes:1","engine":"onnx"}}`,
			400, `but diabetes:1 is a "trees" model`},
		{"resolves", "POST", "/v1/deployments", `{"name":"e","spec":{"model":"diabetes@champion"}}`, 201, ""},
		{"patch to an unknown alias", "PATCH", "/v1/deployments/e", `{"spec":{"model":"diabetes@gone"}}`,
			400, "diabetes@gone is not in the registry"},
		{"patch that keeps the model", "PATCH", "/v1/deployments/e", `{"spec":{"scaling":{"maxReplicas":3}}}`, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := e.do(t, tc.method, tc.path, "application/json", tc.body)
			if tc.wantMsg == "" {
				if code != tc.wantStatus {
					t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, code, body, tc.wantStatus)
				}
				return
			}
			wantError(t, tc.name, code, body, tc.wantStatus, "deployment/invalid", tc.wantMsg)
		})
	}
	for _, name := range []string{"a", "b", "c", "d"} {
		if code, _, _ := e.do(t, "GET", "/v1/deployments/"+name, "", ""); code != http.StatusNotFound {
			t.Errorf("refused deployment %s was stored (GET = %d)", name, code)
		}
	}
}
