package python

import (
	"context"
	"io"
	"math"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/oip"
)

// wider lists, for each datatype the worker may produce, the datatypes it is
// sent as, first choice first (worker.py's WIDER): the first the replica
// carries (dtypes) is the one expected.
var wider = map[string][]string{
	oip.BOOL:  {oip.BOOL},
	"INT8":    {"INT8", "INT16", oip.INT32},
	"INT16":   {"INT16", oip.INT32},
	"UINT8":   {"UINT8", "UINT16", "UINT32", "UINT64", oip.INT64},
	"UINT16":  {"UINT16", "UINT32", "UINT64", oip.INT64},
	"UINT32":  {"UINT32", "UINT64", oip.INT64},
	"UINT64":  {"UINT64", oip.INT64},
	"FP16":    {"FP16", oip.FP32},
	oip.FP64:  {oip.FP64},
	oip.BYTES: {oip.BYTES},
}

func carried(dt string) string {
	for _, d := range wider[dt] {
		if _, ok := dtypes[d]; ok {
			return d
		}
	}
	return ""
}

// numbers returns numeric data as float64s, whatever its Go type.
func numbers(t *testing.T, data any) []float64 {
	t.Helper()
	v := reflect.ValueOf(data)
	if v.Kind() != reflect.Slice {
		t.Fatalf("data %T is not a slice", data)
	}
	out := make([]float64, v.Len())
	for i := range out {
		e := v.Index(i)
		switch {
		case e.CanInt():
			out[i] = float64(e.Int())
		case e.CanUint():
			if f, ok := e.Interface().(interface{ Float32() float32 }); ok {
				out[i] = float64(f.Float32()) // oip.Float16, oip.BFloat16
			} else {
				out[i] = float64(e.Uint())
			}
		case e.CanFloat():
			out[i] = e.Float()
		case e.Kind() == reflect.Bool:
			if e.Bool() {
				out[i] = 1
			}
		default:
			t.Fatalf("element of %T is not a number", data)
		}
	}
	return out
}

// TestOutputDatatypes checks that the worker sends every numpy dtype as its
// own datatype when the replica carries it, else as the nearest wider one,
// with the values intact.
func TestOutputDatatypes(t *testing.T) {
	if exec.Command(DefaultInterpreter, "-c", "import numpy").Run() != nil {
		t.Skip("skipping: " + DefaultInterpreter + " cannot import numpy (apt-get install python3-numpy)")
	}
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := Load(ctx, Options{Class: "widen.py:Model", Model: dir, CacheDir: t.TempDir(), Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	in := []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{1}, Data: []float32{0}}}
	out, err := m.Predict(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		dt   string
		data []float64
	}{
		"i8":  {"INT8", []float64{-128, 127}},
		"i16": {"INT16", []float64{-32768}},
		"u8":  {"UINT8", []float64{0, 255}},
		"u16": {"UINT16", []float64{65535}},
		"u32": {"UINT32", []float64{4294967295}},
		"u64": {"UINT64", []float64{math.MaxInt64}},
		"f16": {"FP16", []float64{1.5, -2}},
		"f64": {oip.FP64, []float64{0.1}},
		"b":   {oip.BOOL, []float64{1}},
	}
	for _, o := range out {
		if o.Name == "s" {
			if diff := cmp.Diff(oip.Tensor{Name: "s", Datatype: oip.BYTES, Shape: []int64{1}, Data: []string{"x"}}, o); diff != "" {
				t.Errorf("output s (-want +got):\n%s", diff)
			}
			continue
		}
		w, ok := want[o.Name]
		if !ok {
			t.Errorf("unexpected output %q", o.Name)
			continue
		}
		delete(want, o.Name)
		if dt := carried(w.dt); o.Datatype != dt {
			t.Errorf("output %q is %s, want %s (a %s, sent as the first datatype the replica carries)", o.Name, o.Datatype, dt, w.dt)
		}
		if err := o.Check(); err != nil {
			t.Errorf("output %q: %v", o.Name, err)
		}
		if got := numbers(t, o.Data); !cmp.Equal(got, w.data) {
			t.Errorf("output %q holds %v, want %v", o.Name, got, w.data)
		}
	}
	for name := range want {
		t.Errorf("output %q is missing", name)
	}

	if carried("UINT64") == oip.INT64 {
		in[0].Name = "big"
		_, err := m.Predict(ctx, in)
		if err == nil || !strings.Contains(err.Error(), "cannot be sent as INT64") {
			t.Errorf("a uint64 above INT64's range: %v, want an error saying it cannot be sent", err)
		}
	}
}
