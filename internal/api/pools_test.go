package api_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// poolController is a fakeController that reports pools too.
type poolController struct {
	*fakeController
	bytes map[string]int64 // model → measured size
}

func (c *poolController) PoolStatus(name string) serving.PoolStatus {
	return serving.PoolStatus{Models: 1, Loaded: 1, ReadyReplicas: 2}
}

func (c *poolController) PoolModelBytes(_, model string) int64 { return c.bytes[model] }

var _ api.PoolController = (*poolController)(nil)

func TestPoolsAPI(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctl := &poolController{fakeController: &fakeController{statuses: map[string]serving.Status{}}, bytes: map[string]int64{}}
	h := api.New(st, ctl, nil)
	h.MountPools(st)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e := &env{st: st, ctl: ctl.fakeController, srv: srv}

	dir := t.TempDir()
	bigONNX := filepath.Join(dir, "big.onnx")
	if err := os.WriteFile(bigONNX, make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	bigTrees := filepath.Join(dir, "big.json")
	if err := os.WriteFile(bigTrees, make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	pooledDep := func(name, model, engine, pool string) string {
		return `{"name":"` + name + `","spec":{"model":"` + model + `","engine":"` + engine + `","pool":{"name":"` + pool + `"}}}`
	}
	const pool = `{"name":"tiny","spec":{"engine":"trees","memoryBudget":"2MiB","maxReplicas":3}}`
	tests := []struct {
		name         string
		method, path string
		body         string
		want         int
		contains     []string
		notified     string
	}{
		{"list empty", "GET", "/v1/pools", "", 200, []string{`"items": []`}, ""},
		{"create", "POST", "/v1/pools", pool, 201, []string{`"generation": 1`, `"shardSize": 2`, `"loaded": 1`}, "pool:tiny"},
		{"create again", "POST", "/v1/pools", pool, 409, []string{"pool/exists"}, ""},
		{"invalid", "POST", "/v1/pools", `{"name":"bad","spec":{"engine":"http","memoryBudget":"lots","shardSize":-1}}`, 400,
			[]string{"pool/invalid", `spec.engine: \"http\" cannot run a pool`, "spec.memoryBudget", "spec.shardSize"}, ""},
		{"get", "GET", "/v1/pools/tiny", "", 200, []string{`"memoryBudget": "2MiB"`, `"readyReplicas": 2`}, ""},
		{"get missing", "GET", "/v1/pools/nope", "", 404, []string{"pool/not_found"}, ""},
		{"PUT replaces", "PUT", "/v1/pools/tiny", `{"spec":{"engine":"trees","memoryBudget":"4MiB"}}`, 200, []string{`"generation": 2`}, "pool:tiny"},
		{"PUT creates", "PUT", "/v1/pools/nets", `{"spec":{"engine":"onnx","memoryBudget":"2MiB"}}`, 201, []string{`"name": "nets"`}, "pool:nets"},

		{"deployment in a missing pool", "POST", "/v1/deployments", pooledDep("a", "m.json", "trees", "nope"), 400,
			[]string{`pool \"nope\" does not exist`}, ""},
		{"deployment of another engine", "POST", "/v1/deployments", pooledDep("b", bigONNX, "onnx", "tiny"), 400,
			[]string{`pool \"tiny\" runs engine trees`}, ""},
		{"onnx file over the budget", "POST", "/v1/deployments", pooledDep("c", bigONNX, "onnx", "nets"), 400,
			[]string{"needs 3 MiB (3145728 bytes", "memory budget of 2 MiB (2097152 bytes)", "its file's size"}, ""},
		{"trees file over the budget is not refused", "POST", "/v1/deployments", pooledDep("d", bigTrees, "trees", "nets2"), 400,
			[]string{`pool \"nets2\" does not exist`}, ""},
		{"PUT in a pool", "PUT", "/v1/deployments/measured", `{"spec":{"model":"m.json","pool":{"name":"tiny"}}}`, 201,
			[]string{`"pool"`}, "measured"},
		{"in a pool", "POST", "/v1/deployments", pooledDep("e", bigTrees, "trees", "tiny"), 201, []string{`"name": "tiny"`}, "e"},
		{"pooled with a pin", "POST", "/v1/deployments", `{"name":"f","spec":{"model":"m.json","replicas":2,"pool":{"name":"tiny"}}}`, 400,
			[]string{"spec.replicas: a pooled model runs on its pool's replicas"}, ""},
		{"delete a pool in use", "DELETE", "/v1/pools/tiny", "", 409, []string{"pool/in_use", "e, measured"}, ""},
		{"delete", "DELETE", "/v1/pools/nets", "", 204, nil, "pool:nets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.ctl.takeNotified()
			code, _, body := e.do(t, tt.method, tt.path, "application/json", tt.body)
			if code != tt.want {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, code, body, tt.want)
			}
			for _, c := range tt.contains {
				if !strings.Contains(string(body), c) {
					t.Errorf("body %s lacks %q", body, c)
				}
			}
			if got := e.ctl.takeNotified(); tt.notified != "" && !slices.Contains(got, tt.notified) {
				t.Errorf("notified %v, want %s", got, tt.notified)
			}
		})
	}

	// Once a replica measured it over the pool's budget, the deployment
	// cannot be written into the pool again.
	ctl.bytes["measured"] = 5 << 20
	code, _, body := e.do(t, "PUT", "/v1/deployments/measured", "application/json", `{"spec":{"model":"m2.json","pool":{"name":"tiny"}}}`)
	if code != 400 || !strings.Contains(string(body), "needs 5 MiB") || !strings.Contains(string(body), "as a replica of the pool measured it") {
		t.Errorf("PUT of a model measured too large: %d %s", code, body)
	}
}
