package api

import (
	"errors"
	"net/http"
	"testing"
)

// TestDecodeDeploymentProblems checks that one error names every unknown,
// duplicate or badly typed field of a deployment body, by its full path.
func TestDecodeDeploymentProblems(t *testing.T) {
	for _, tt := range []struct {
		name, body, want string
	}{
		{
			"unknown nested field",
			`{"name":"iris","spec":{"model":"m.json","scaling":{"minReplica":1}}}`,
			"invalid deployment: spec.scaling.minReplica: unknown field: check its spelling and case",
		},
		{
			"names are case-sensitive",
			`{"name":"iris","spec":{"Model":"m.json"}}`,
			"invalid deployment: spec.Model: unknown field: check its spelling and case",
		},
		{
			"duplicate fields",
			`{"name":"iris","spec":{"model":"m","scaling":{"maxReplicas":3,"maxReplicas":4}},"spec":{"model":"n"}}`,
			"invalid deployment: spec: duplicate field: give it once; spec.scaling.maxReplicas: duplicate field: give it once",
		},
		{
			"every kind of problem together",
			`{"name":"iris","spec":{"model":7,"colour":"red","scaling":{"stableWindow":"1 minute"}}}`,
			`invalid deployment: spec.colour: unknown field: check its spelling and case; spec.model: must be a string, got number; ` +
				`spec.scaling.stableWindow: invalid duration "1 minute": use a Go duration such as "30s", "5m" or "1h30m"`,
		},
		{
			"values of the wrong type",
			`{"name":7,"spec":{"model":{"a":1},"scaling":{"maxReplicas":1.5,"minReplicas":"2"},"command":["a",2],"env":{"A":1}}}`,
			"invalid deployment: name: must be a string, got number; spec.command: must be a string, got number; " +
				"spec.env: must be a string, got number; spec.model: must be a string, got object; " +
				"spec.scaling.maxReplicas: must be an integer, got number 1.5; spec.scaling.minReplicas: must be an integer, got string",
		},
		{
			"object expected",
			`{"name":"iris","spec":5}`,
			"invalid deployment: spec: must be an object, got number",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeDeployment([]byte(tt.body))
			ae, ok := errors.AsType[*apiError](err)
			if !ok {
				t.Fatalf("decodeDeployment = %v, want an *apiError", err)
			}
			if ae.status != http.StatusBadRequest || ae.code != codeInvalid {
				t.Errorf("status, code = %d, %s; want %d, %s", ae.status, ae.code, http.StatusBadRequest, codeInvalid)
			}
			if ae.message != tt.want {
				t.Errorf("message:\n got %s\nwant %s", ae.message, tt.want)
			}
		})
	}
}

func TestDecodeDeploymentValid(t *testing.T) {
	b, err := decodeDeployment([]byte(`{"name":"iris","spec":{"model":"m.json","env":{"A":"1"}},"status":{"replicas":2},"generation":3}`))
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "iris" || b.Spec.Model != "m.json" || b.Spec.Env["A"] != "1" {
		t.Errorf("decodeDeployment = %+v, want name iris, model m.json, env A=1", b)
	}
}
