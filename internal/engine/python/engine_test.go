package python_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/engine/python"
	"github.com/ebb-ml/ebb/internal/oip"
)

// The model implements the engine contract, and the server's optional
// AnyInputs.
var _ engine.Model = (*python.Model)(nil)
var _ interface{ AnyInputs() bool } = (*python.Model)(nil)

// syncBuffer is a bytes.Buffer safe for the workers' output copiers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// load loads a testdata class in workers of this process, runs their
// supervisor until the test ends, and returns the model.
func load(t *testing.T, class string, workers int, env ...string) *python.Model {
	t.Helper()
	stderr := &syncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := python.Load(ctx, python.Options{
		Class: class, Model: testdata(t, ""), Workers: workers, Env: env,
		CacheDir: t.TempDir(), Stdout: io.Discard, Stderr: stderr, StopTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatalf("Load %s: %v\nworkers' stderr:\n%s", class, err, stderr)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(rctx)
	}()
	t.Cleanup(func() {
		stop()
		<-done
		if t.Failed() {
			t.Logf("workers' stderr:\n%s", stderr)
		}
	})
	return m
}

// cmd is a request for testdata/control.py.
func cmd(cmds ...string) []oip.Tensor {
	return []oip.Tensor{{Name: "cmd", Datatype: oip.BYTES, Shape: []int64{int64(len(cmds))}, Data: cmds}}
}

func predict(t *testing.T, m *python.Model, in []oip.Tensor) ([]oip.Tensor, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return m.Predict(ctx, in)
}

// pidOf returns the worker PID a control.py answer carries.
func pidOf(t *testing.T, out []oip.Tensor) int64 {
	t.Helper()
	if len(out) != 2 || out[0].Name != "pid" {
		t.Fatalf("answer %+v, want pid and rows", out)
	}
	return out[0].Data.([]int64)[0]
}

// TestDatatypes passes a tensor of every datatype through predict and back,
// with numpy and without it (the pure-Python path).
func TestDatatypes(t *testing.T) {
	requirePython(t, "numpy")
	in := everyDatatype()
	for _, mode := range []struct {
		name, kind string
		env        []string
	}{
		{name: "numpy", kind: "numpy"},
		{name: "no numpy", kind: "builtins", env: []string{"PYTHONPATH=" + testdata(t, "nonumpy")}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			m := load(t, "typed.py:Model", 1, mode.env...)
			out, err := predict(t, m, in)
			if err != nil {
				t.Fatal(err)
			}
			var want []oip.Tensor
			for _, tt := range in {
				tt.Name += "_out"
				want = append(want, tt)
			}
			want = append(want, oip.Tensor{Name: "kind", Datatype: oip.BYTES, Shape: []int64{1}, Data: []string{mode.kind}})
			if diff := cmp.Diff(want, out); diff != "" {
				t.Errorf("outputs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConvertsToDeclared checks that a number sent as another numeric
// datatype than the one declared (which the server accepts) reaches predict
// as the declared one, and that outputs are cast to their declared
// datatype.
func TestConvertsToDeclared(t *testing.T) {
	requirePython(t, "numpy")
	m := load(t, "signature.py:Model", 1)
	out, err := predict(t, m, []oip.Tensor{{Name: "x", Datatype: oip.FP64, Shape: []int64{1, 3}, Data: []float64{1, 2, 3.5}}})
	if err != nil {
		t.Fatal(err)
	}
	// predict sums the rows in Python (a list of floats); metadata()
	// declares the output FP32.
	want := []oip.Tensor{{Name: "predict", Datatype: oip.FP32, Shape: []int64{1}, Data: []float32{6.5}}}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("outputs (-want +got):\n%s", diff)
	}
}

func TestPredictErrors(t *testing.T) {
	requirePython(t, "numpy")
	m := load(t, "control.py:Model", 1)
	tests := []struct {
		cmd   string
		want  string
		input bool // an *engine.InputError: the server answers 400
	}{
		{cmd: "fail", want: "ValueError: the model cannot handle fail"},
		{cmd: "reject", want: "ValueError: reject is not for this model", input: true},
		{cmd: "badout", want: `output "pid" cannot be sent as an OIP v2 tensor`},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			_, err := predict(t, m, cmd(tt.cmd))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Predict error %v, want %q", err, tt.want)
			}
			var ie *engine.InputError
			if errors.As(err, &ie) != tt.input {
				t.Errorf("error %v is an InputError: %v, want %v", err, !tt.input, tt.input)
			}
		})
	}
	// The worker survives them all.
	if _, err := predict(t, m, cmd("ok")); err != nil {
		t.Errorf("after the errors: %v", err)
	}
}

// TestWorkerCrash crashes one of two workers while the other holds a
// request: the crashed one's request fails with its exit status and last
// stderr line, the other's succeeds, and the crashed worker is restarted.
func TestWorkerCrash(t *testing.T) {
	requirePython(t, "numpy")
	entered, release := fifos(t)
	m := load(t, "control.py:Model", 2, "ENTERED="+entered, "RELEASE="+release)
	before, err := predict(t, m, cmd("ok"))
	if err != nil {
		t.Fatal(err)
	}

	type answer struct {
		out []oip.Tensor
		err error
	}
	waited := make(chan answer, 1)
	go func() {
		out, err := m.Predict(context.Background(), cmd("wait"))
		waited <- answer{out, err}
	}()
	if _, err := os.ReadFile(entered); err != nil { // blocks until predict opened it
		t.Fatal(err)
	}
	// One worker holds "wait": the crash goes to the other.
	_, err = predict(t, m, cmd("crash"))
	for _, want := range []string{"python worker exited: exit status 3", "crashing on purpose"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("crashed request error %v, want it to contain %q", err, want)
		}
	}
	if err := os.WriteFile(release, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if a := <-waited; a.err != nil {
		t.Errorf("the other worker's request failed: %v", a.err)
	}

	// The crashed worker is restarted: a PID other than worker 0's answers
	// (the crashed worker never answered).
	first := pidOf(t, before)
	for deadline := time.Now().Add(time.Minute); ; {
		if time.Now().After(deadline) {
			t.Fatal("no restarted worker answered within a minute")
		}
		var wg sync.WaitGroup
		outs := make([][]oip.Tensor, 4)
		for i := range outs {
			wg.Go(func() { outs[i], _ = m.Predict(context.Background(), cmd("ok")) })
		}
		wg.Wait()
		for _, o := range outs {
			if o != nil && pidOf(t, o) != first {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRestartFailure checks that requests fail at once, saying why, when
// the only worker exited and cannot load the class again.
func TestRestartFailure(t *testing.T) {
	requirePython(t, "numpy")
	dir := t.TempDir()
	src, err := os.ReadFile(testdata(t, "control.py"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "control.py")
	if err := os.WriteFile(file, src, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := python.Load(ctx, python.Options{Class: file + ":Model", Model: dir, CacheDir: t.TempDir(), Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(rctx)
	}()
	defer func() { stop(); <-done }()
	os.Remove(file) // the restart cannot import it
	if _, err := m.Predict(ctx, cmd("crash")); err == nil {
		t.Fatal("crash succeeded")
	}
	for {
		_, err := m.Predict(ctx, cmd("ok"))
		if err != nil && strings.Contains(err.Error(), "no python worker is running: restarting one failed") {
			if !strings.Contains(err.Error(), "control.py does not exist") {
				t.Errorf("error %v does not say why the restart failed", err)
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("requests never failed for the failed restart; last error %v", err)
		}
	}
}

// TestClose checks that Close lets the request in flight finish, stops the
// workers and fails later requests.
func TestClose(t *testing.T) {
	requirePython(t, "numpy")
	entered, release := fifos(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := python.Load(ctx, python.Options{Class: "control.py:Model", Model: testdata(t, ""), Workers: 2,
		Env: []string{"ENTERED=" + entered, "RELEASE=" + release}, CacheDir: t.TempDir(), Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Predict(ctx, cmd("ok"))
	if err != nil {
		t.Fatal(err)
	}
	pid := int(pidOf(t, out))
	errc := make(chan error, 1)
	go func() {
		_, err := m.Predict(ctx, cmd("wait"))
		errc <- err
	}()
	if _, err := os.ReadFile(entered); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		m.Close()
		close(closed)
	}()
	if err := os.WriteFile(release, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Errorf("request in flight at Close: %v", err)
	}
	<-closed
	if _, err := m.Predict(ctx, cmd("ok")); !errors.Is(err, python.ErrClosed) {
		t.Errorf("Predict after Close: %v, want ErrClosed", err)
	}
	if alive(pid) {
		t.Errorf("worker %d still runs after Close", pid)
	}
}

// TestCanceledRequest checks that a request whose context ends stops
// waiting at once, and that the worker's late answer does not reach the
// next request.
func TestCanceledRequest(t *testing.T) {
	requirePython(t, "numpy")
	entered, release := fifos(t)
	m := load(t, "control.py:Model", 1, "ENTERED="+entered, "RELEASE="+release)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := m.Predict(ctx, cmd("wait"))
		errc <- err
	}()
	if _, err := os.ReadFile(entered); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("canceled request: %v, want context.Canceled", err)
	}
	if err := os.WriteFile(release, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := predict(t, m, cmd("ok", "ok"))
	if err != nil {
		t.Fatal(err)
	}
	if rows := out[1].Data.([]int64); !cmp.Equal(rows, []int64{2, 2}) {
		t.Errorf("next answer has rows %v, want [2 2] (its own)", rows)
	}
}

func TestAnyInputs(t *testing.T) {
	requirePython(t, "numpy")
	if m := load(t, "echo.py:Model", 1); !m.AnyInputs() || len(m.Metadata().Inputs) != 0 {
		t.Errorf("echo.py declares nothing: AnyInputs %v, inputs %v", m.AnyInputs(), m.Metadata().Inputs)
	}
	if m := load(t, "control.py:Model", 1); m.AnyInputs() {
		t.Error("control.py declares its inputs, but AnyInputs is true")
	}
}

func TestLoadRefusesWorkers(t *testing.T) {
	for _, n := range []int{-1, python.MaxWorkers + 1} {
		_, err := python.Load(context.Background(), python.Options{Class: "control.py:Model", Model: testdata(t, ""), Workers: n})
		if err == nil || !strings.Contains(err.Error(), "give 1 to 64") {
			t.Errorf("Load with %d workers: %v, want a range error", n, err)
		}
	}
}

// fifos makes the two FIFOs control.py's "wait" uses.
func fifos(t *testing.T) (entered, release string) {
	t.Helper()
	dir := t.TempDir()
	entered, release = filepath.Join(dir, "entered"), filepath.Join(dir, "release")
	for _, f := range []string{entered, release} {
		if err := syscall.Mkfifo(f, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return entered, release
}

// everyDatatype is one input of each datatype for testdata/typed.py, with
// the extremes of each range.
func everyDatatype() []oip.Tensor {
	return []oip.Tensor{
		{Name: "b", Datatype: oip.BOOL, Shape: []int64{2, 2}, Data: []bool{true, false, false, true}},
		{Name: "i8", Datatype: oip.INT8, Shape: []int64{1, 2}, Data: []int8{-128, 127}},
		{Name: "i16", Datatype: oip.INT16, Shape: []int64{1, 2}, Data: []int16{-32768, 32767}},
		{Name: "i32", Datatype: oip.INT32, Shape: []int64{1, 2}, Data: []int32{-2147483648, 7}},
		{Name: "i64", Datatype: oip.INT64, Shape: []int64{1, 2}, Data: []int64{-1, 1 << 62}},
		{Name: "u8", Datatype: oip.UINT8, Shape: []int64{1, 2}, Data: []uint8{0, 255}},
		{Name: "u16", Datatype: oip.UINT16, Shape: []int64{1, 2}, Data: []uint16{0, 65535}},
		{Name: "u32", Datatype: oip.UINT32, Shape: []int64{1, 2}, Data: []uint32{0, 4294967295}},
		{Name: "u64", Datatype: oip.UINT64, Shape: []int64{1, 2}, Data: []uint64{0, 18446744073709551615}},
		{Name: "f16", Datatype: oip.FP16, Shape: []int64{1, 2}, Data: []oip.Float16{oip.Float16From(1.5), oip.Float16From(-65504)}},
		{Name: "bf16", Datatype: oip.BF16, Shape: []int64{1, 2}, Data: []oip.BFloat16{oip.BFloat16From(1.5), oip.BFloat16From(-3e38)}},
		{Name: "f32", Datatype: oip.FP32, Shape: []int64{1, 2}, Data: []float32{1.5, -0.25}},
		{Name: "f64", Datatype: oip.FP64, Shape: []int64{2, 2}, Data: []float64{1e300, -2, 0, 3.25}},
		{Name: "s", Datatype: oip.BYTES, Shape: []int64{1, 2}, Data: []string{"hé", "\xff\x00raw"}},
	}
}

// TestLoadFailureStopsWorkers checks that when the class fails to load in
// one worker, Load returns its error and stops the workers that loaded it.
func TestLoadFailureStopsWorkers(t *testing.T) {
	requirePython(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := python.Load(ctx, python.Options{Class: "third_fails.py:Model", Model: testdata(t, ""), Workers: 3,
		CacheDir: t.TempDir(), Stdout: io.Discard, Stderr: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "RuntimeError: worker 2 cannot load") {
		t.Fatalf("Load = %v, want the class's load error", err)
	}
	for _, pid := range workerPIDs(t, os.Getpid()) {
		if alive(pid) {
			t.Errorf("process %d, a child of the test, still runs after Load failed", pid)
		}
	}
}
