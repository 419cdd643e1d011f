package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// fakeLabels knows the predictions of request "r1" (1.5) and "r2" (3).
type fakeLabels struct{}

func (fakeLabels) JoinLabels(deployment string, labels []monitor.Label, task monitor.Task) (monitor.QualityReport, error) {
	preds := map[string]monitor.Prediction{"r1": {Key: "r1", Deployment: "d", Version: "m:1", Num: 1.5}, "r2": {Key: "r2", Deployment: "d", Version: "m:1", Num: 3}}
	return monitor.JoinLabels(deployment, labels, func(k string) (monitor.Prediction, bool) { p, ok := preds[k]; return p, ok }, task)
}

func TestLabelsRoute(t *testing.T) {
	e := newEnvWith(t, func(h *api.Handler, _ *sqlite.Store) { h.MountLabels(fakeLabels{}) })
	if _, err := e.st.CreateDeployment(t.Context(), serving.Deployment{Name: "d", Spec: serving.Spec{Model: "m:1", Scaling: serving.Scaling{MaxReplicas: 1}}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path, body string
		wantCode                 int
		wantIn                   string
	}{
		{"joined", "POST", "/v1/deployments/d/labels", `{"labels":[{"requestId":"r1","label":"2"},{"requestId":"r2","label":"2"},{"requestId":"r9","label":"1"}]}`,
			http.StatusOK, `"mae": 0.75`},
		{"classification", "POST", "/v1/deployments/d/labels", `{"task":"classification","labels":[{"requestId":"r2","label":"3"}]}`, http.StatusOK, `"accuracy": 1`},
		{"unknown task", "POST", "/v1/deployments/d/labels", `{"task":"ranking","labels":[]}`, http.StatusBadRequest, `unknown task`},
		{"no request id", "POST", "/v1/deployments/d/labels", `{"labels":[{"label":"1"}]}`, http.StatusBadRequest, `label 0 has no requestId`},
		{"not labels", "POST", "/v1/deployments/d/labels", `{"labels":3}`, http.StatusBadRequest, `"request/malformed"`},
		{"missing deployment", "POST", "/v1/deployments/nope/labels", `{"labels":[]}`, http.StatusNotFound, `"deployment/not_found"`},
		{"method", "GET", "/v1/deployments/d/labels", ``, http.StatusMethodNotAllowed, `"request/method_not_allowed"`},
	}
	for _, tt := range tests {
		code, _, body := e.do(t, tt.method, tt.path, "application/json", tt.body)
		if code != tt.wantCode || !strings.Contains(string(body), tt.wantIn) {
			t.Errorf("%s: %d %s; want %d with %s", tt.name, code, body, tt.wantCode, tt.wantIn)
		}
		if tt.name == "joined" {
			var rep monitor.QualityReport
			if err := json.Unmarshal(body, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Labels != 3 || rep.Unmatched != 1 || len(rep.Versions) != 1 || rep.Versions[0].Matched != 2 {
				t.Errorf("joined: %+v", rep)
			}
		}
	}
}
