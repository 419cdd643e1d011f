//go:build cgo

package onnx

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/oip"
)

// branches.onnx has plus = 2x + 1, via_if = 3x (read from the outer graph
// by an If) and bad, a Reshape that fails on every run.
func branchesIO(x ...float32) ([]oip.Tensor, map[string]oip.Tensor) {
	n := int64(len(x))
	plus, tripled := make([]float32, len(x)), make([]float32, len(x))
	for i, v := range x {
		plus[i], tripled[i] = 2*v+1, 3*v
	}
	return []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{n}, Data: x}},
		map[string]oip.Tensor{
			"plus":   {Name: "plus", Datatype: oip.FP32, Shape: []int64{n}, Data: plus},
			"via_if": {Name: "via_if", Datatype: oip.FP32, Shape: []int64{n}, Data: tripled},
		}
}

// TestSubsetSkipsOtherBranches: a request for some outputs runs only the
// nodes they need; bad's Reshape, which fails whenever it runs, fails only
// the requests that need it.
func TestSubsetSkipsOtherBranches(t *testing.T) {
	m := loadModel(t, goldenModel("branches"))
	in, want := branchesIO(1, 2, 3)
	ctx := context.Background()

	// The premise: ONNX Runtime itself runs every node, whatever a run
	// fetches. Should a release stop doing so, subsets.go could go.
	t.Run("runtime", func(t *testing.T) {
		var vs values
		defer vs.release()
		if err := vs.add(elemFloat, in[0]); err != nil {
			t.Fatal(err)
		}
		out, err := m.sess.run(vs.v, []int{0}, nil)
		if err == nil {
			releaseOutputs(out)
			t.Fatal("ONNX Runtime fetched plus alone without running bad's Reshape: it prunes by itself now")
		}
	})

	for _, tt := range []struct {
		outputs []string
		want    []string // outputs expected; nil: the run fails in Reshape
	}{
		{[]string{"plus"}, []string{"plus"}},
		{[]string{"via_if"}, []string{"via_if"}},
		{[]string{"via_if", "plus"}, []string{"plus", "via_if"}},
		{[]string{"bad"}, nil},
		{[]string{"plus", "bad"}, nil},
		{nil, nil},
	} {
		// Twice: the second run reuses the session the first created.
		for range 2 {
			got, err := m.PredictOutputs(ctx, in, tt.outputs)
			if tt.want == nil {
				if err == nil || !strings.Contains(err.Error(), "Reshape") {
					t.Errorf("PredictOutputs(%q): error = %v, want Reshape's", tt.outputs, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("PredictOutputs(%q): %v", tt.outputs, err)
				continue
			}
			var w []oip.Tensor
			for _, name := range tt.want {
				w = append(w, want[name])
			}
			if diff := cmp.Diff(w, got); diff != "" {
				t.Errorf("PredictOutputs(%q) (-want +got):\n%s", tt.outputs, diff)
			}
		}
	}
	// One session per set that leaves something out: plus, via_if, both,
	// bad, plus and bad.
	if got := sessionKeys(m); !cmp.Equal(got, []string{"0", "0,1", "0,2", "1", "2"}) {
		t.Errorf("sessions for output sets %q", got)
	}
}

// sessionKeys lists the output sets that have a session, sorted.
func sessionKeys(m *Model) []string {
	m.subsets.mu.Lock()
	defer m.subsets.mu.Unlock()
	var keys []string
	for k, e := range m.subsets.byKey {
		if e.sess != nil {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// TestSubsetExternalData: a pruned copy of a model whose weights are in an
// external data file, loaded from memory, finds the file.
func TestSubsetExternalData(t *testing.T) {
	m := loadModel(t, goldenModel("external"))
	in := []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{1, 4}, Data: []float32{1, 0, 0, 1}}}
	for _, tt := range []struct {
		output string
		want   []float32
	}{
		{"y", []float32{12, 14, 16, 18}}, // rows 0 and 3 of W
		{"z", []float32{2, 1, 1, 2}},
	} {
		got, err := m.PredictOutputs(context.Background(), in, []string{tt.output})
		if err != nil {
			t.Fatalf("PredictOutputs(%s): %v", tt.output, err)
		}
		want := []oip.Tensor{{Name: tt.output, Datatype: oip.FP32, Shape: []int64{1, 4}, Data: tt.want}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("PredictOutputs(%s) (-want +got):\n%s", tt.output, diff)
		}
	}
	if got := sessionKeys(m); !cmp.Equal(got, []string{"0", "1"}) {
		t.Errorf("sessions for output sets %q; why not: %v", got, fallbackReasons(m))
	}
}

func fallbackReasons(m *Model) map[string]string {
	m.subsets.mu.Lock()
	defer m.subsets.mu.Unlock()
	why := map[string]string{}
	for k, e := range m.subsets.byKey {
		if e.sess == nil {
			why[k] = e.why
		}
	}
	return why
}

// TestSubsetNeedingEveryNode: the example MLP's probabilities need every
// node (they are the logits' softmax), so they run on the model's own
// session; the logits alone leave the softmax out.
func TestSubsetNeedingEveryNode(t *testing.T) {
	m := loadModel(t, mlpModel)
	g := readGolden(t)
	in := []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{2, 64}, Data: rows(g.Inputs["input"], 0, 2)}}
	for _, name := range []string{"logits", "probabilities"} {
		out, err := m.PredictOutputs(context.Background(), in, []string{name})
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 1 || out[0].Name != name {
			t.Fatalf("PredictOutputs(%s) = %v", name, out)
		}
		want, got := rows(g.Outputs[name], 0, 2), out[0].Data.([]float32)
		for i := range want {
			if !closeTo(want[i], got[i]) {
				t.Errorf("%s[%d] = %v, PyTorch gave %v", name, i, got[i], want[i])
			}
		}
	}
	if got := sessionKeys(m); !cmp.Equal(got, []string{"0"}) {
		t.Errorf("sessions for output sets %q", got)
	}
	if why := fallbackReasons(m)["1"]; !strings.Contains(why, "need every node") {
		t.Errorf("probabilities run on the model's session because %q", why)
	}
}

// TestSubsetSessionsBounded: at most maxSubsetSessions sessions; another
// set runs on the model's own session until one has been idle for
// subsetIdle, then takes its place.
func TestSubsetSessionsBounded(t *testing.T) {
	m := loadModel(t, goldenModel("datatypes"))
	now := time.Unix(1e9, 0)
	m.subsets.mu.Lock()
	m.subsets.now = func() time.Time { return now }
	m.subsets.mu.Unlock()
	in := datatypesInputs()
	// Outputs 0 to 7 pass inputs 0 to 7 through; 8 is u8 cast to FP32.
	ask := func(i int) {
		t.Helper()
		name := m.outputs[i].name
		got, err := m.PredictOutputs(context.Background(), in, []string{name})
		if err != nil {
			t.Fatalf("PredictOutputs(%s): %v", name, err)
		}
		want := any([]float32{0, 1, 128, 255})
		if i < len(in) {
			want = in[i].Data
		}
		if len(got) != 1 || !cmp.Equal(got[0].Data, want) {
			t.Fatalf("PredictOutputs(%s) = %v, want %v", name, got, want)
		}
	}
	for i := range maxSubsetSessions + 1 { // outputs 0 to 8
		ask(i)
		now = now.Add(time.Second)
	}
	want := []string{"0", "1", "2", "3", "4", "5", "6", "7"}
	if got := sessionKeys(m); !cmp.Equal(got, want) {
		t.Fatalf("after 9 sets: sessions for %q, want %q", got, want)
	}
	now = now.Add(subsetIdle)
	ask(1) // now the most recently used
	ask(8) // evicts 0, the least recently used
	want = []string{"1", "2", "3", "4", "5", "6", "7", "8"}
	if got := sessionKeys(m); !cmp.Equal(got, want) {
		t.Fatalf("after the sessions idled: sessions for %q, want %q", got, want)
	}

	// A session in use is never evicted, however long it has been idle.
	now = now.Add(subsetIdle)
	var held []*subset
	for i := 1; i <= 8; i++ {
		m.mu.RLock()
		e, err := m.subsets.acquire(context.Background(), m, []int{i})
		m.mu.RUnlock()
		if err != nil || e == nil {
			t.Fatalf("acquire(%d) = %v, %v", i, e, err)
		}
		held = append(held, e)
	}
	ask(0)
	if got := sessionKeys(m); !cmp.Equal(got, want) {
		t.Errorf("with every session in use: sessions for %q, want %q", got, want)
	}
	for _, e := range held {
		m.subsets.release(e)
	}
	m.subsets.mu.Lock()
	n, bytes := m.subsets.sessions, m.subsets.bytes
	m.subsets.mu.Unlock()
	if n != maxSubsetSessions || bytes <= 0 || bytes > m.subsets.budget {
		t.Errorf("%d sessions holding %d bytes, want %d within a budget of %d", n, bytes, maxSubsetSessions, m.subsets.budget)
	}
}

// TestSubsetBudget: a pruned model larger than the budget runs on the
// model's own session; one that fits once others idle replaces them.
func TestSubsetBudget(t *testing.T) {
	m := loadModel(t, goldenModel("branches"))
	in, want := branchesIO(4)
	m.subsets.budget = 1
	got, err := m.PredictOutputs(context.Background(), in, []string{"plus"})
	if err == nil {
		t.Fatalf("PredictOutputs(plus) over budget = %v: it ran pruned", got)
	}
	if why := fallbackReasons(m)["0"]; !strings.Contains(why, "more than the budget of 1") {
		t.Errorf("plus runs on the model's own session because %q", why)
	}

	m2 := loadModel(t, goldenModel("branches"))
	now := time.Unix(1e9, 0)
	m2.subsets.now = func() time.Time { return now }
	if _, err := m2.PredictOutputs(context.Background(), in, []string{"plus"}); err != nil {
		t.Fatal(err)
	}
	g, err := indexGraph(goldenModel("branches"))
	if err != nil {
		t.Fatal(err)
	}
	m2.subsets.mu.Lock()
	// Room for either session, not both.
	m2.subsets.budget = max(m2.subsets.bytes, g.prune([]string{"via_if"}).size)
	m2.subsets.mu.Unlock()
	if _, err := m2.PredictOutputs(context.Background(), in, []string{"via_if"}); err == nil {
		t.Error("via_if ran pruned with no room in the budget")
	}
	now = now.Add(subsetIdle)
	got, err = m2.PredictOutputs(context.Background(), in, []string{"via_if"})
	if err != nil {
		t.Fatalf("via_if once plus idled: %v", err)
	}
	if diff := cmp.Diff([]oip.Tensor{want["via_if"]}, got); diff != "" {
		t.Errorf("via_if (-want +got):\n%s", diff)
	}
	if got := sessionKeys(m2); !cmp.Equal(got, []string{"1"}) {
		t.Errorf("sessions for output sets %q, want via_if's alone", got)
	}
}

// TestConcurrentSubsets asks for different sets of outputs from many
// goroutines at once; the first requests of a set wait for its session.
func TestConcurrentSubsets(t *testing.T) {
	m := loadModel(t, goldenModel("branches"))
	sets := [][]string{{"plus"}, {"via_if"}, {"plus", "via_if"}}
	var wg sync.WaitGroup
	for w := range 12 {
		wg.Go(func() {
			for iter := range 20 {
				in, want := branchesIO(float32(w), float32(iter))
				set := sets[(w+iter)%len(sets)]
				got, err := m.PredictOutputs(context.Background(), in, set)
				if err != nil {
					t.Errorf("PredictOutputs(%q): %v", set, err)
					return
				}
				var w []oip.Tensor // sets are in the graph's order
				for _, name := range set {
					w = append(w, want[name])
				}
				if diff := cmp.Diff(w, got); diff != "" {
					t.Errorf("PredictOutputs(%q) (-want +got):\n%s", set, diff)
				}
			}
		})
	}
	wg.Wait()
	if got := sessionKeys(m); !cmp.Equal(got, []string{"0", "0,1", "1"}) {
		t.Errorf("sessions for output sets %q", got)
	}
}

// TestSubsetWaitCancelled: a request waiting for another to create its
// session gives up when its context ends.
func TestSubsetWaitCancelled(t *testing.T) {
	m := loadModel(t, goldenModel("branches"))
	e := &subset{ready: make(chan struct{})}
	m.subsets.byKey = map[string]*subset{"0": e}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	in, _ := branchesIO(1)
	if _, err := m.PredictOutputs(ctx, in, []string{"plus"}); err != context.DeadlineExceeded {
		t.Errorf("error = %v, want %v", err, context.DeadlineExceeded)
	}
	m.subsets.byKey = nil
}

func TestCloseReleasesSubsets(t *testing.T) {
	m := loadModel(t, goldenModel("branches"))
	in, _ := branchesIO(1)
	for _, set := range [][]string{{"plus"}, {"via_if"}} {
		if _, err := m.PredictOutputs(context.Background(), in, set); err != nil {
			t.Fatal(err)
		}
	}
	sessions := maps.Clone(m.subsets.byKey)
	if len(sessions) != 2 {
		t.Fatalf("%d sessions, want 2", len(sessions))
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for key, e := range sessions {
		if e.sess != nil {
			t.Errorf("the session of output set %s outlived Close", key)
		}
	}
	if _, err := m.PredictOutputs(context.Background(), in, []string{"plus"}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("PredictOutputs after Close: error = %v", err)
	}
}
