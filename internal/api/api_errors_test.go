package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
)

func TestBadRequests(t *testing.T) {
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		wantStatus  int
		wantCode    string
		// wantMessage lists substrings the message must contain.
		wantMessage []string
		wantAllow   string
	}{
		{
			name: "malformed JSON", method: "POST", path: "/v1/deployments", body: `{"name":"x",`,
			wantStatus: 400, wantCode: "request/malformed", wantMessage: []string{"not valid JSON"},
		},
		{
			name: "empty body", method: "POST", path: "/v1/deployments",
			wantStatus: 400, wantCode: "request/malformed", wantMessage: []string{"empty"},
		},
		{
			name: "body not an object", method: "POST", path: "/v1/deployments", body: `[1,2]`,
			wantStatus: 400, wantCode: "request/malformed", wantMessage: []string{"must be a JSON object"},
		},
		{
			name: "unknown field", method: "POST", path: "/v1/deployments",
			body:       `{"name":"iris","spec":{"model":"m.json","scaling":{"minReplica":1}}}`,
			wantStatus: 400, wantCode: "deployment/invalid", wantMessage: []string{"spec.scaling.minReplica: unknown field"},
		},
		{
			name: "unknown top-level field", method: "PUT", path: "/v1/deployments/iris",
			body:       `{"name":"iris","spek":{}}`,
			wantStatus: 400, wantCode: "deployment/invalid", wantMessage: []string{"spek: unknown field"},
		},
		{
			name: "invalid duration", method: "POST", path: "/v1/deployments",
			body:       `{"name":"iris","spec":{"model":"m.json","scaling":{"scaleToZeroAfter":"5 minutes"}}}`,
			wantStatus: 400, wantCode: "deployment/invalid",
			wantMessage: []string{`spec.scaling.scaleToZeroAfter: invalid duration "5 minutes"`},
		},
		{
			name: "wrong type", method: "POST", path: "/v1/deployments",
			body:       `{"name":"iris","spec":{"model":"m.json","scaling":{"maxReplicas":"3"}}}`,
			wantStatus: 400, wantCode: "deployment/invalid",
			wantMessage: []string{"spec.scaling.maxReplicas: must be an integer, got string"},
		},
		{
			name: "decode problems listed together", method: "POST", path: "/v1/deployments",
			body:       `{"name":"iris","spec":{"model":7,"colour":"red","scaling":{"stableWindow":"1 minute"}}}`,
			wantStatus: 400, wantCode: "deployment/invalid",
			wantMessage: []string{"spec.colour: unknown field", "spec.model: must be a string", "spec.scaling.stableWindow: invalid duration"},
		},
		{
			name: "min greater than max", method: "POST", path: "/v1/deployments",
			body:       `{"name":"iris","spec":{"model":"m.json","scaling":{"minReplicas":5,"maxReplicas":2}}}`,
			wantStatus: 400, wantCode: "deployment/invalid",
			wantMessage: []string{"minReplicas (5) must not exceed maxReplicas (2)"},
		},
		{
			name: "unknown engine", method: "POST", path: "/v1/deployments",
			body:       `{"name":"iris","spec":{"model":"m.json","engine":"tensorflow"}}`,
			wantStatus: 400, wantCode: "deployment/invalid",
			wantMessage: []string{`spec.engine: unknown engine "tensorflow": use one of trees`},
		},
		{
			name: "every validation problem listed", method: "POST", path: "/v1/deployments",
			body:       `{"name":"Bad_Name","spec":{"engine":"x","scaling":{"targetConcurrency":-1}}}`,
			wantStatus: 400, wantCode: "deployment/invalid",
			wantMessage: []string{"name:", "spec.model: is required", "spec.engine:", "spec.scaling.targetConcurrency:"},
		},
		{
			name: "wrong name", method: "POST", path: "/v1/deployments",
			body:       `{"name":"Bad_Name","spec":{"model":"m.json"}}`,
			wantStatus: 400, wantCode: "deployment/invalid", wantMessage: []string{`name: "Bad_Name" must be`},
		},
		{
			name: "missing name", method: "POST", path: "/v1/deployments", body: `{"spec":{"model":"m.json"}}`,
			wantStatus: 400, wantCode: "deployment/invalid", wantMessage: []string{"name: is required"},
		},
		{
			name: "put name mismatch", method: "PUT", path: "/v1/deployments/iris",
			body:       `{"name":"other","spec":{"model":"m.json"}}`,
			wantStatus: 400, wantCode: "deployment/invalid", wantMessage: []string{`"other" in the body does not match "iris"`},
		},
		{
			name: "put invalid over existing", method: "PUT", path: "/v1/deployments/diabetes",
			body:       `{"spec":{"model":"m.json","scaling":{"maxReplicas":-1}}}`,
			wantStatus: 400, wantCode: "deployment/invalid", wantMessage: []string{"spec.scaling.maxReplicas: must be at least 1"},
		},
		{
			name: "create existing", method: "POST", path: "/v1/deployments", body: diabetesJSON,
			wantStatus: 409, wantCode: "deployment/exists", wantMessage: []string{`deployment "diabetes" already exists`},
		},
		{
			name: "patch changing name", method: "PATCH", path: "/v1/deployments/diabetes",
			contentType: "application/merge-patch+json", body: `{"name":"renamed"}`,
			wantStatus: 400, wantCode: "deployment/invalid", wantMessage: []string{`cannot change "diabetes" to "renamed"`},
		},
		{
			name: "patch to invalid spec", method: "PATCH", path: "/v1/deployments/diabetes",
			contentType: "application/merge-patch+json", body: `{"spec":{"scaling":{"minReplicas":9}}}`,
			wantStatus: 400, wantCode: "deployment/invalid", wantMessage: []string{"minReplicas (9) must not exceed maxReplicas (3)"},
		},
		{
			name: "patch unknown field", method: "PATCH", path: "/v1/deployments/diabetes",
			contentType: "application/json", body: `{"spec":{"replica":2}}`,
			wantStatus: 400, wantCode: "deployment/invalid", wantMessage: []string{"spec.replica: unknown field"},
		},
		{
			name: "patch invalid duration", method: "PATCH", path: "/v1/deployments/diabetes",
			contentType: "application/merge-patch+json", body: `{"spec":{"scaling":{"scaleToZeroAfter":"5 minutes"}}}`,
			wantStatus: 400, wantCode: "deployment/invalid", wantMessage: []string{`spec.scaling.scaleToZeroAfter: invalid duration "5 minutes"`},
		},
		{
			name: "patch malformed", method: "PATCH", path: "/v1/deployments/diabetes",
			contentType: "application/merge-patch+json", body: `{"spec":`,
			wantStatus: 400, wantCode: "request/malformed", wantMessage: []string{"merge patch is not valid JSON"},
		},
		{
			name: "patch not an object", method: "PATCH", path: "/v1/deployments/diabetes",
			contentType: "application/merge-patch+json", body: `[{"op":"replace","path":"/spec/model","value":"x"}]`,
			wantStatus: 400, wantCode: "request/malformed", wantMessage: []string{"merge patch must be a JSON object"},
		},
		{
			name: "patch with JSON Patch media type", method: "PATCH", path: "/v1/deployments/diabetes",
			contentType: "application/json-patch+json", body: `[]`,
			wantStatus: 415, wantCode: "request/unsupported_media_type", wantMessage: []string{"application/merge-patch+json"},
		},
		{
			name: "post with text body", method: "POST", path: "/v1/deployments", contentType: "text/plain", body: diabetesJSON,
			wantStatus: 415, wantCode: "request/unsupported_media_type", wantMessage: []string{"send application/json"},
		},
		{
			name: "patch unknown deployment", method: "PATCH", path: "/v1/deployments/nope",
			contentType: "application/merge-patch+json", body: `{"spec":{"model":"x"}}`,
			wantStatus: 404, wantCode: "deployment/not_found",
			wantMessage: []string{"deployment \"nope\" not found: list deployments with `ebb get deployments`"},
		},
		{
			name: "get unknown deployment", method: "GET", path: "/v1/deployments/nope",
			wantStatus: 404, wantCode: "deployment/not_found", wantMessage: []string{`deployment "nope" not found`},
		},
		{
			name: "delete unknown deployment", method: "DELETE", path: "/v1/deployments/nope",
			wantStatus: 404, wantCode: "deployment/not_found", wantMessage: []string{`deployment "nope" not found`},
		},
		{
			name: "too large", method: "POST", path: "/v1/deployments",
			body:       `{"name":"iris","spec":{"model":"` + strings.Repeat("a", 2<<20) + `"}}`,
			wantStatus: 413, wantCode: "request/too_large",
		},
		{
			name: "method not allowed on collection", method: "DELETE", path: "/v1/deployments",
			wantStatus: 405, wantCode: "request/method_not_allowed", wantAllow: "GET, HEAD, POST",
		},
		{
			name: "method not allowed on item", method: "POST", path: "/v1/deployments/diabetes", body: `{}`,
			wantStatus: 405, wantCode: "request/method_not_allowed", wantAllow: "DELETE, GET, HEAD, PATCH, PUT",
		},
		{
			name: "unknown route", method: "GET", path: "/v1/nothing",
			wantStatus: 404, wantCode: "request/not_found",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if code, _, body := e.do(t, "POST", "/v1/deployments", "application/json", diabetesJSON); code != http.StatusCreated {
				t.Fatalf("seed: POST = %d %s", code, body)
			}
			e.ctl.takeNotified()
			before := e.snapshot(t)

			code, hdr, body := e.do(t, tt.method, tt.path, tt.contentType, tt.body)
			if code != tt.wantStatus {
				t.Errorf("status = %d, want %d; body %s", code, tt.wantStatus, body)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			got := decode[api.ErrorBody](t, body)
			if got.Error.Code != tt.wantCode {
				t.Errorf("code = %q, want %q; message %q", got.Error.Code, tt.wantCode, got.Error.Message)
			}
			if got.Error.Message == "" {
				t.Errorf("empty error message")
			}
			for _, want := range tt.wantMessage {
				if !strings.Contains(got.Error.Message, want) {
					t.Errorf("message %q does not contain %q", got.Error.Message, want)
				}
			}
			if tt.wantAllow != "" && hdr.Get("Allow") != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", hdr.Get("Allow"), tt.wantAllow)
			}
			if diff := cmp.Diff(before, e.snapshot(t)); diff != "" {
				t.Errorf("store changed by a failed request (-before +after):\n%s", diff)
			}
			if n := e.ctl.takeNotified(); len(n) != 0 {
				t.Errorf("control loop notified %v after a failed request", n)
			}
		})
	}
}

// TestStoreFailure checks that a store failure is a 500 that hides the
// cause and notifies nobody.
func TestStoreFailure(t *testing.T) {
	e := newEnv(t)
	e.st.Close()
	for _, req := range []struct{ method, path, body string }{
		{"GET", "/v1/deployments", ""},
		{"GET", "/v1/deployments/diabetes", ""},
		{"POST", "/v1/deployments", diabetesJSON},
		{"DELETE", "/v1/deployments/diabetes", ""},
	} {
		code, _, body := e.do(t, req.method, req.path, "", req.body)
		if code != http.StatusInternalServerError {
			t.Errorf("%s %s = %d, want 500", req.method, req.path, code)
		}
		got := decode[api.ErrorBody](t, body)
		if got.Error.Code != "internal" || strings.Contains(got.Error.Message, "sql") {
			t.Errorf("%s %s error = %+v, want code internal and no database detail", req.method, req.path, got.Error)
		}
	}
	if n := e.ctl.takeNotified(); len(n) != 0 {
		t.Errorf("notified %v after failures", n)
	}
}

// TestConcurrentPatches checks that merge patches to different fields of
// one deployment all apply.
func TestConcurrentPatches(t *testing.T) {
	e := newEnv(t)
	if code, _, body := e.do(t, "POST", "/v1/deployments", "application/json", diabetesJSON); code != http.StatusCreated {
		t.Fatalf("POST = %d %s", code, body)
	}
	patches := []string{
		`{"spec":{"scaling":{"minReplicas":1}}}`,
		`{"spec":{"scaling":{"maxReplicas":7}}}`,
		`{"spec":{"scaling":{"targetConcurrency":3}}}`,
		`{"spec":{"model":"v2.json"}}`,
	}
	type result struct {
		code int
		body []byte
		err  error
	}
	done := make(chan result, len(patches))
	for _, p := range patches {
		go func() {
			code, _, body, err := e.send("PATCH", "/v1/deployments/diabetes", "application/merge-patch+json", p)
			done <- result{code, body, err}
		}()
	}
	for range patches {
		if r := <-done; r.err != nil || r.code != http.StatusOK {
			t.Errorf("PATCH = %d %s %v, want 200", r.code, r.body, r.err)
		}
	}
	got, err := e.st.GetDeployment(context.Background(), "diabetes")
	if err != nil {
		t.Fatal(err)
	}
	want := defaulted(serving.Spec{Model: "v2.json", Scaling: serving.Scaling{
		MinReplicas: 1, MaxReplicas: 7, TargetConcurrency: 3, ScaleToZeroAfter: serving.D(2 * time.Minute)}})
	if diff := cmp.Diff(want, got.Spec); diff != "" {
		t.Errorf("spec after concurrent patches (-want +got):\n%s", diff)
	}
	if got.Generation != 1+int64(len(patches)) {
		t.Errorf("generation = %d, want %d", got.Generation, 1+len(patches))
	}
}
