package python_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/engine/python"
	"github.com/ebb-ml/ebb/internal/oip"
)

// A hosted model is a model of the replica server, which sizes it itself.
var (
	_ engine.Model                  = (*python.HostedModel)(nil)
	_ engine.Sizer                  = (*python.HostedModel)(nil)
	_ io.Closer                     = (*python.HostedModel)(nil)
	_ interface{ AnyInputs() bool } = (*python.HostedModel)(nil)
)

// startHost starts a Host of workers in this process, stopped when the
// test ends.
func startHost(t *testing.T, workers int, env ...string) *python.Host {
	t.Helper()
	stderr := &syncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := python.StartHost(ctx, python.Options{
		Workers: workers, Env: env, CacheDir: t.TempDir(), Stdout: io.Discard, Stderr: stderr, StopTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatalf("StartHost: %v\nworkers' stderr:\n%s", err, stderr)
	}
	t.Cleanup(func() {
		h.Close()
		if t.Failed() {
			t.Logf("workers' stderr:\n%s", stderr)
		}
	})
	return h
}

// pooledModel writes a model file for testdata/pooled.py into dir.
func pooledModel(t *testing.T, dir, name string, scale float64, mib int) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, fmt.Appendf(nil, "scale=%g mib=%d\n", scale, mib), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func hostLoad(t *testing.T, h *python.Host, name, class, path string) *python.HostedModel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := h.Load(ctx, name, class, path)
	if err != nil {
		t.Fatalf("Load %s: %v", name, err)
	}
	return m
}

// scaled asks m to scale xs; it returns y and the PID of the worker that
// answered.
func scaled(m engine.Model, xs ...float64) ([]float64, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := m.Predict(ctx, []oip.Tensor{{Name: "x", Datatype: oip.FP64, Shape: []int64{int64(len(xs))}, Data: xs}})
	if err != nil {
		return nil, 0, err
	}
	if len(out) != 2 || out[0].Name != "y" || out[1].Name != "pid" {
		return nil, 0, fmt.Errorf("answer %+v, want y and pid", out)
	}
	return out[0].Data.([]float64), out[1].Data.([]int64)[0], nil
}

// residentOf returns process pid's resident memory in bytes.
func residentOf(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "statm"))
	if err != nil {
		t.Skipf("no /proc to read a worker's memory from: %v", err)
	}
	pages, err := strconv.ParseInt(strings.Fields(string(b))[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// TestHostLoadsModels loads three models of one class into the same two
// workers: each answers with its own scale, from several goroutines at
// once; the big one counts the memory it holds in both workers; and
// unloading it calls its unload(), gives that memory back, and leaves the
// others answering.
func TestHostLoadsModels(t *testing.T) {
	requirePython(t)
	unloaded := t.TempDir()
	h := startHost(t, 2, "UNLOADED_DIR="+unloaded)
	dir := t.TempDir()
	class := testdata(t, "pooled.py") + ":Model"
	// One names its class relative to its model's directory.
	src, err := os.ReadFile(testdata(t, "pooled.py"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pooled_here.py"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	const bigMiB = 32
	models := []struct {
		name, class string
		scale       float64
		mib         int
	}{
		{"double", class, 2, 0},
		{"negate", "pooled_here.py:Model", -1, 0},
		{"big", class, 10, bigMiB},
	}
	loaded := map[string]*python.HostedModel{}
	for _, m := range models {
		loaded[m.name] = hostLoad(t, h, m.name, m.class, pooledModel(t, dir, m.name+".txt", m.scale, m.mib))
	}
	if md := loaded["double"].Metadata(); len(md.Inputs) != 1 || md.Inputs[0].Name != "x" || loaded["double"].AnyInputs() {
		t.Errorf("metadata %+v, want the class's input x", md)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 3*8)
	for _, m := range models {
		for g := range 8 {
			wg.Go(func() {
				for i := range 10 {
					x := float64(g*100 + i)
					y, _, err := scaled(loaded[m.name], x, 1)
					if err == nil && (len(y) != 2 || y[0] != x*m.scale || y[1] != m.scale) {
						err = fmt.Errorf("%s scaled [%g 1] to %v", m.name, x, y)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	for _, m := range models {
		t.Logf("%s: %d bytes, as the workers measured it", m.name, loaded[m.name].ModelBytes())
	}
	big := loaded["big"]
	if got, want := big.ModelBytes(), int64(2*(bigMiB-4)<<20); got < want {
		t.Errorf("big counts %d bytes, want at least %d: %d MiB in each of 2 workers", got, want, bigMiB)
	}
	if got := loaded["double"].ModelBytes(); got > 16<<20 {
		t.Errorf("double counts %d bytes, want little: it holds next to nothing", got)
	}
	pids := h.PIDs()
	if len(pids) != 2 {
		t.Fatalf("PIDs = %v, want 2 workers", pids)
	}
	before := map[int]int64{}
	for _, pid := range pids {
		before[pid] = residentOf(t, pid)
	}
	if err := big.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		after := residentOf(t, pid)
		t.Logf("worker %d: resident %d bytes before unloading big, %d after", pid, before[pid], after)
		if before[pid]-after < (bigMiB-8)<<20 {
			t.Errorf("worker %d: resident %d bytes before unloading big, %d after: want %d MiB given back", pid, before[pid], after, bigMiB)
		}
	}
	if b, err := os.ReadFile(filepath.Join(unloaded, "big.txt")); err != nil || string(b) != "unloaded\n" {
		t.Errorf("big's unload() was not called: %q, %v", b, err)
	}
	if _, _, err := scaled(big, 1); err == nil || !strings.Contains(err.Error(), "unloaded") {
		t.Errorf("predict after unload: %v, want an error saying it was unloaded", err)
	}
	for _, name := range []string{"double", "negate"} {
		if _, _, err := scaled(loaded[name], 3); err != nil {
			t.Errorf("%s after big's unload: %v", name, err)
		}
	}
	// Loaded again under the same name: a new instance.
	again := hostLoad(t, h, "big", class, pooledModel(t, dir, "big2.txt", 7, 0))
	if y, _, err := scaled(again, 2); err != nil || y[0] != 14 {
		t.Errorf("big loaded again answered %v, %v; want [14]", y, err)
	}
}

// TestHostRefusesLoads checks the loads a Host refuses, each with what to
// do about it; none leaves a model behind, and the workers go on loading
// and serving.
func TestHostRefusesLoads(t *testing.T) {
	requirePython(t)
	h := startHost(t, 2)
	dir := t.TempDir()
	path := pooledModel(t, dir, "m.txt", 3, 0)
	pooled := testdata(t, "pooled.py")
	for _, tt := range []struct {
		name, class string
		want        []string
	}{
		{"class without opt-in", pooled + ":Alone", []string{"Alone does not say that several models may share one process", "ebb_multi_model = True", "without spec.pool"}},
		{"single-model class", testdata(t, "echo.py") + ":Model", []string{"ebb_multi_model = True"}},
		{"load raises", pooled + ":FailsLoad", []string{`load("` + path + `") raised RuntimeError: cannot read m.txt`}},
		{"no such file", "missing.py:Model", []string{"missing.py does not exist", "relative to the model's directory"}},
		{"no class", "", []string{"model bad has no class", "spec.python.class"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			m, err := h.Load(ctx, "bad", tt.class, path)
			if err == nil {
				m.Close()
				t.Fatalf("Load of %s succeeded, want an error", tt.class)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	m := hostLoad(t, h, "good", pooled+":Model", path)
	if y, _, err := scaled(m, 2); err != nil || y[0] != 6 {
		t.Errorf("a good model after the refusals answered %v, %v; want [6]", y, err)
	}
}

// TestHostWorkerExit ends a worker from a model's predict: its request
// fails with the exit, the Host reports it failed, and the requests and
// loads after it fail at once rather than wait for a worker that will not
// come back.
func TestHostWorkerExit(t *testing.T) {
	requirePython(t)
	h := startHost(t, 1)
	dir := t.TempDir()
	class := testdata(t, "pooled.py") + ":Model"
	a := hostLoad(t, h, "a", class, pooledModel(t, dir, "a.txt", 2, 0))
	b := hostLoad(t, h, "b", class, pooledModel(t, dir, "b.txt", 3, 0))
	if _, _, err := scaled(a, -999); err == nil || !strings.Contains(err.Error(), "python worker exited: exit status 3") {
		t.Fatalf("predict that ends the worker: %v, want its exit", err)
	}
	select {
	case <-h.Failed():
	case <-time.After(time.Minute):
		t.Fatal("the Host did not report its worker's exit")
	}
	if err := h.Err(); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Err = %v, want the worker's exit", err)
	}
	if _, _, err := scaled(b, 1); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("predict of another model after the exit: %v, want the exit", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := h.Load(ctx, "c", class, pooledModel(t, dir, "c.txt", 1, 0)); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("Load after the exit: %v, want an error saying a worker exited", err)
	}
}
