package python_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/engine/python"
	"github.com/ebb-ml/ebb/internal/oip"
)

// TestMissingModules checks the worker's memory of missing modules: a module
// found missing is missing until importlib.invalidate_caches() or a change
// of sys.path, importlib.util.find_spec still answers None for it, and the
// garbage collector was frozen after load.
func TestMissingModules(t *testing.T) {
	requirePython(t)
	m := load(t, "imports.py:Model", 1, "IMPORTS_DIR="+t.TempDir())
	out, err := predict(t, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []string{
		"frozen: True",
		"ebb_missing_a: No module named 'ebb_missing_a'",
		"find_spec: None",
		// Created since: not searched for again...
		"ebb_missing_a: No module named 'ebb_missing_a'",
		// ...until the caches are invalidated.
		"ebb_missing_a: found EBB_MISSING_A",
		"ebb_missing_b: No module named 'ebb_missing_b'",
		// Created in a directory then added to sys.path.
		"ebb_missing_b: found EBB_MISSING_B",
	}
	want := []oip.Tensor{{Name: "steps", Datatype: oip.BYTES, Shape: []int64{int64(len(steps))}, Data: steps}}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("outputs (-want +got):\n%s", diff)
	}
}

// TestChannelReads runs testdata/channel.py, which feeds worker.py's reader
// frames in pieces of every size.
func TestChannelReads(t *testing.T) {
	requirePython(t)
	script, err := python.WriteWorker(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python.DefaultInterpreter, testdata(t, "channel.py"), script).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("channel.py: %v\n%s", err, out)
	}
}

// fp32s returns n numbers that differ from call to call.
func fp32s(n, call int) oip.Tensor {
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(call*1000003 + i)
	}
	return oip.Tensor{Name: "x", Datatype: oip.FP32, Shape: []int64{int64(n)}, Data: data}
}

// TestInputsOfTheirOwn sends inputs small and larger than the worker's read
// buffer to a model that keeps each until the next call: what it kept is
// unchanged by the frames read after it.
func TestInputsOfTheirOwn(t *testing.T) {
	requirePython(t, "numpy")
	m := load(t, "keep.py:Model", 1)
	var prev oip.Tensor
	for call, n := range []int{3, 40000, 5, 1, 20000, 70000, 2, 2} {
		in := fp32s(n, call)
		out, err := predict(t, m, []oip.Tensor{in})
		if err != nil {
			t.Fatal(err)
		}
		if call == 0 {
			prev = in
		}
		want := []oip.Tensor{in, prev}
		want[1].Name = "previous"
		if diff := cmp.Diff(want, out); diff != "" {
			t.Fatalf("call %d of %d numbers: outputs (-want +got):\n%s", call, n, diff)
		}
		prev = in
	}
}

// TestPipelinedFrames sends requests of mixed sizes from several goroutines,
// so that a worker's socket holds more than one frame, and checks every
// answer.
func TestPipelinedFrames(t *testing.T) {
	requirePython(t, "numpy")
	m := load(t, "echo.py:Model", 2)
	sizes := []int{1, 7, 300, 17000, 2, 90000, 64, 5}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			for i := range 30 {
				call := g*100 + i
				in := fp32s(sizes[(g+i)%len(sizes)], call)
				out, err := m.Predict(context.Background(), []oip.Tensor{in})
				if err == nil && (len(out) != 2 || !cmp.Equal(in.Data, out[1].Data)) {
					err = fmt.Errorf("call %d: the answer is not its input", call)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
