package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/pool"
	"github.com/ebb-ml/ebb/internal/server/servertest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// tinyFeatures is the number of features of the models tinyModel writes.
const tinyFeatures = 4

// tinyModel writes a small XGBoost JSON model (reg:squarederror, three
// trees of depth one or two over 4 features, thresholds and leaves drawn
// from seed) into dir and returns its path.
func tinyModel(t testing.TB, dir string, seed uint64) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 99))
	leaf := func() string { return fmt.Sprintf("%.4f", rng.Float64()*10-5) }
	cut := func() string { return fmt.Sprintf("%.4f", rng.Float64()*2-1) }
	feat := func() int { return rng.IntN(tinyFeatures) }
	var tree []string
	for range 3 {
		if rng.IntN(2) == 0 { // one split
			tree = append(tree, fmt.Sprintf(`{"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_conditions":[%s,%s,%s],"split_indices":[%d,0,0],"default_left":[1,0,0]}`,
				cut(), leaf(), leaf(), feat()))
			continue
		}
		tree = append(tree, fmt.Sprintf(`{"left_children":[1,3,-1,-1,-1],"right_children":[2,4,-1,-1,-1],"split_conditions":[%s,%s,%s,%s,%s],"split_indices":[%d,%d,0,0,0],"default_left":[0,1,0,0,0]}`,
			cut(), cut(), leaf(), leaf(), leaf(), feat(), feat()))
	}
	model := fmt.Sprintf(`{"learner":{"learner_model_param":{"base_score":"%s","num_feature":"%d"},"objective":{"name":"reg:squarederror"},`+
		`"gradient_booster":{"name":"gbtree","model":{"tree_info":[0,0,0],"trees":[%s]}}}}`, leaf(), tinyFeatures, strings.Join(tree, ","))
	path := filepath.Join(dir, fmt.Sprintf("tiny-%d.json", seed))
	if err := os.WriteFile(path, []byte(model), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// treesLoader loads trees models by path, counting the loads.
type treesLoader struct {
	mu    sync.Mutex
	loads map[string]int
}

func (l *treesLoader) load(_ context.Context, req LoadRequest) (LoadedModel, error) {
	l.mu.Lock()
	if l.loads == nil {
		l.loads = map[string]int{}
	}
	l.loads[req.Name]++
	l.mu.Unlock()
	m, err := trees.Load(req.Model)
	if err != nil {
		return LoadedModel{}, err
	}
	return LoadedModel{Model: m}, nil
}

// postJSON posts body (marshalled unless a string) to url and returns the
// status and the response body.
func postJSON(t testing.TB, url string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader = http.NoBody
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	resp, err := http.Post(url, "application/json", r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func loadBody(path string) map[string]any {
	return map[string]any{"parameters": map[string]any{"model": path, "engine": "trees"}}
}

// index reads the replica's repository index.
func index(t testing.TB, base string) []ModelStatus {
	t.Helper()
	code, body := postJSON(t, base+"/v2/repository/index", nil)
	if code != http.StatusOK {
		t.Fatalf("index: %d %s", code, body)
	}
	var out []ModelStatus
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("index: %v: %s", err, body)
	}
	return out
}

// rows returns n rows of tinyFeatures values for model seed.
func rows(seed uint64, n int) oip.Tensor {
	rng := rand.New(rand.NewPCG(seed, 7))
	x := make([]float32, n*tinyFeatures)
	for i := range x {
		x[i] = float32(rng.Float64()*2 - 1)
	}
	return oip.Tensor{Name: trees.InputName, Datatype: oip.FP32, Shape: []int64{int64(n), tinyFeatures}, Data: x}
}

// TestPoolManyModels loads 200 tiny XGBoost models into one replica
// server, checks every answer against the model's own prediction (REST
// and gRPC), then unloads half: they leave the index and answer 404,
// while the rest keep answering.
func TestPoolManyModels(t *testing.T) {
	const n = 200
	dir := t.TempDir()
	loader := &treesLoader{}
	s := NewPool("tiny-pool", Options{}, PoolOptions{Budget: 512 << 20, Engine: "trees", Load: loader.load})
	c := servertest.Start(t, s)

	paths := make([]string, n)
	for i := range n {
		paths[i] = tinyModel(t, dir, uint64(i))
		name := fmt.Sprintf("m-%03d", i)
		code, body := postJSON(t, c.Base+"/v2/repository/models/"+name+"/load", loadBody(paths[i]))
		if code != http.StatusOK {
			t.Fatalf("load %s: %d %s", name, code, body)
		}
		var st ModelStatus
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.State != pool.Ready || st.Bytes <= 0 || st.Bytes != st.EngineBytes {
			t.Fatalf("load %s: status %+v, want READY with the engine's byte count", name, st)
		}
	}

	check := func(i int, grpc bool) error {
		name := fmt.Sprintf("m-%03d", i)
		m, err := trees.Load(paths[i])
		if err != nil {
			return err
		}
		in := rows(uint64(i), 5)
		want, err := m.Predict(context.Background(), []oip.Tensor{in})
		if err != nil {
			return err
		}
		var got []oip.Tensor
		if grpc {
			got, err = c.InferGRPC(name, []oip.Tensor{in}, nil, false)
		} else {
			var resp servertest.Response
			resp, err = c.PostREST(name, oip.InferRequest{}, []oip.Tensor{in}, false)
			got = resp.Outputs
			if err == nil && resp.ModelName != name {
				return fmt.Errorf("%s answered as %q", name, resp.ModelName)
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		g, err := got[0].Float32s()
		if err != nil {
			return err
		}
		w := want[0].Data.([]float32)
		if fmt.Sprint(g) != fmt.Sprint(w) {
			return fmt.Errorf("%s predicted %v, the model itself %v", name, g, w)
		}
		return nil
	}
	for i := range n {
		if err := check(i, i%10 == 0); err != nil {
			t.Fatal(err)
		}
	}

	idx := index(t, c.Base)
	if len(idx) != n {
		t.Fatalf("index has %d models, want %d", len(idx), n)
	}
	var total int64
	for _, st := range idx {
		total += st.Bytes
		if st.State != pool.Ready || st.LastUsed.IsZero() {
			t.Errorf("index entry %+v, want READY and used", st)
		}
	}
	if info := s.Info().Pool; info == nil || info.Models != n || info.UsedBytes != total || info.BudgetBytes != 512<<20 {
		t.Errorf("replica info pool = %+v, want %d models holding %d bytes", info, n, total)
	}
	t.Logf("%d models hold %d bytes by the engine's count (%d each on average)", n, total, total/n)

	for i := 0; i < n; i += 2 {
		name := fmt.Sprintf("m-%03d", i)
		if code, body := postJSON(t, c.Base+"/v2/repository/models/"+name+"/unload", nil); code != http.StatusOK {
			t.Fatalf("unload %s: %d %s", name, code, body)
		}
	}
	idx = index(t, c.Base)
	if len(idx) != n/2 {
		t.Fatalf("after unloading half, the index has %d models, want %d", len(idx), n/2)
	}
	for _, st := range idx {
		var i int
		fmt.Sscanf(st.Name, "m-%03d", &i)
		if i%2 == 0 {
			t.Errorf("unloaded model %s is still in the index", st.Name)
		}
	}
	if _, err := c.PostREST("m-000", oip.InferRequest{}, []oip.Tensor{rows(0, 1)}, false); err == nil || !strings.Contains(err.Error(), "status 404") {
		t.Errorf("infer on an unloaded model: %v, want 404", err)
	}
	for i := 1; i < n; i += 2 {
		if err := check(i, i%10 == 1); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Info().Pool.UsedBytes; got >= total {
		t.Errorf("after unloading half, the pool counts %d bytes, want less than %d", got, total)
	}
}

// TestPoolEndpoints checks metadata, readiness and the server's
// description of a pool's replica.
func TestPoolEndpoints(t *testing.T) {
	dir := t.TempDir()
	s := NewPool("p", Options{}, PoolOptions{Engine: "trees", Load: (&treesLoader{}).load})
	c := servertest.Start(t, s)
	if code, body := postJSON(t, c.Base+"/v2/repository/models/a/load", loadBody(tinyModel(t, dir, 1))); code != http.StatusOK {
		t.Fatalf("load: %d %s", code, body)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(c.Base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		path string
		code int
		want string
	}{
		{"/v2", 200, `"model_repository"`},
		{"/v2/health/ready", 200, `{"ready":true}`},
		{"/v2/models/a", 200, `"name":"a"`},
		{"/v2/models/a/ready", 200, `"ready":true`},
		{"/v2/models/b/ready", 404, "not loaded"},
		{"/v2/models/b", 404, "not loaded on this replica: load it with POST /v2/repository/models/b/load"},
		{"/ebb/v1/replica", 200, `"pool":{"budgetBytes":0`},
		{"/v2/repository/index", 405, "use POST"},
		{"/nothing", 404, "hosts a pool of models"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			code, body := get(tt.path)
			if code != tt.code || !strings.Contains(body, tt.want) {
				t.Errorf("GET %s = %d %s, want %d with %s", tt.path, code, body, tt.code, tt.want)
			}
		})
	}

	ctx := context.Background()
	if r, err := c.GRPC.ModelReady(ctx, &oipgrpc.ModelReadyRequest{Name: "a"}); err != nil || !r.Ready {
		t.Errorf("gRPC ModelReady(a) = %v, %v", r, err)
	}
	if _, err := c.GRPC.ModelReady(ctx, &oipgrpc.ModelReadyRequest{Name: "b"}); status.Code(err) != codes.NotFound {
		t.Errorf("gRPC ModelReady(b) = %v, want NotFound", err)
	}
	if m, err := c.GRPC.ModelMetadata(ctx, &oipgrpc.ModelMetadataRequest{Name: "a"}); err != nil || m.Name != "a" || len(m.Inputs) != 1 {
		t.Errorf("gRPC ModelMetadata(a) = %v, %v", m, err)
	}
	if _, err := c.GRPC.ModelMetadata(ctx, &oipgrpc.ModelMetadataRequest{Name: "b"}); status.Code(err) != codes.NotFound {
		t.Errorf("gRPC ModelMetadata(b) = %v, want NotFound", err)
	}
	if m, err := c.GRPC.ServerMetadata(ctx, &oipgrpc.ServerMetadataRequest{}); err != nil || !slices.Contains(m.Extensions, ExtensionModelRepository) {
		t.Errorf("gRPC ServerMetadata = %v, %v; want the model repository extension", m, err)
	}
}
