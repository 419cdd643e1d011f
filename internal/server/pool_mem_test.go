package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"testing"

	"github.com/ebb-ml/ebb/internal/server/servertest"
)

// TestPoolServingBytes checks that what a replica counts for its models
// (each model's own count plus DefaultServingBytes) covers the Go heap
// that hosting them takes: with 2,000 tiny XGBoost models, the heap that
// stays live after the loads is at most the sum of their counted sizes.
// Without DefaultServingBytes a tiny model would count under 1 KiB and
// take several, and a budget would not bound the replica's memory.
func TestPoolServingBytes(t *testing.T) {
	const n = 2000
	dir := t.TempDir()
	paths := make([]string, n)
	for i := range n {
		paths[i] = tinyModel(t, dir, uint64(i))
	}
	loader := &treesLoader{}
	s := NewPool("mem", Options{}, PoolOptions{Budget: 1 << 30, Engine: "trees", Load: loader.load, ServingBytes: DefaultServingBytes})
	c := servertest.Start(t, s)
	live := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := live()
	var counted, engine int64
	for i, path := range paths {
		code, body := postJSON(t, fmt.Sprintf("%s/v2/repository/models/m-%d/load", c.Base, i), loadBody(path))
		if code != http.StatusOK {
			t.Fatalf("load %d: %d %s", i, code, body)
		}
		var st ModelStatus
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.Bytes != st.EngineBytes+DefaultServingBytes || st.ServingBytes != DefaultServingBytes {
			t.Fatalf("load %d: %+v, want bytes = engine bytes + %d", i, st, DefaultServingBytes)
		}
		counted += st.Bytes
		engine += st.EngineBytes
	}
	grown := int64(live() - before)
	t.Logf("%d models: heap grew %d bytes (%d per model); counted %d (%d per model, %d of them the engine's)",
		n, grown, grown/n, counted, counted/n, engine/n)
	if grown > counted {
		t.Errorf("the heap grew %d bytes for %d models, more than the %d counted: raise DefaultServingBytes to at least %d",
			grown, n, counted, (grown-engine)/n+1)
	}
	if info := s.Info().Pool; info.UsedBytes != counted {
		t.Errorf("pool info counts %d bytes, want %d", info.UsedBytes, counted)
	}
}
