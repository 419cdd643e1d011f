package onnx_test

import (
	"math"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/server/servertest"
)

// serveGolden serves testdata/golden/<name>.onnx as deployment "m" over
// REST and gRPC.
func serveGolden(t *testing.T, name string, opts server.Options) *servertest.Client {
	t.Helper()
	if err := onnx.Available(""); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	m, err := onnx.Load("testdata/golden/"+name+".onnx", onnx.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return servertest.Start(t, server.New("m", m, opts))
}

// typesRequest is a request for datatypes.onnx of rows rows; k varies the
// values.
func typesRequest(k, rows int) []oip.Tensor {
	n := 2 * rows
	f := func(i int) float32 {
		return []float32{float32(k) + 0.5, float32(math.NaN()), float32(math.Inf(1)), -65504}[(i+k)%4]
	}
	shape := []int64{int64(rows), 2}
	t := func(name, dt string, data any) oip.Tensor {
		return oip.Tensor{Name: name, Datatype: dt, Shape: shape, Data: data}
	}
	return []oip.Tensor{
		t("u8", oip.UINT8, fill(n, func(i int) uint8 { return uint8(255 - i - k) })),
		t("i8", oip.INT8, fill(n, func(i int) int8 { return int8(-128 + i + k) })),
		t("i16", oip.INT16, fill(n, func(i int) int16 { return int16(32767 - i - k) })),
		t("u16", oip.UINT16, fill(n, func(i int) uint16 { return uint16(65535 - i - k) })),
		t("u32", oip.UINT32, fill(n, func(i int) uint32 { return math.MaxUint32 - uint32(i+k) })),
		t("u64", oip.UINT64, fill(n, func(i int) uint64 { return math.MaxUint64 - uint64(i+k) })),
		t("f16", oip.FP16, fill(n, func(i int) oip.Float16 { return oip.Float16From(f(i)) })),
		t("bf16", oip.BF16, fill(n, func(i int) oip.BFloat16 { return oip.BFloat16From(f(i)) })),
	}
}

func fill[T any](n int, f func(int) T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

// typesAnswer is what datatypes.onnx answers to in.
func typesAnswer(in []oip.Tensor) []oip.Tensor {
	var out []oip.Tensor
	for _, t := range in {
		t.Name += "_out"
		out = append(out, t)
	}
	for _, i := range []int{0, 6, 7} {
		f, _ := in[i].Float32s()
		out = append(out, oip.Tensor{Name: in[i].Name + "_f32", Datatype: oip.FP32, Shape: in[i].Shape, Data: f})
	}
	return out
}

// TestDatatypesEveryProtocol runs the datatypes the engine once refused
// through every protocol of the replica server, batching off and on (all
// protocols at once, sharing batches).
func TestDatatypesEveryProtocol(t *testing.T) {
	for _, batching := range []bool{false, true} {
		opts := server.Options{}
		if batching {
			opts.Batching = server.BatchingPolicy(64, nil, 200*time.Millisecond)
		}
		c := serveGolden(t, "datatypes", opts)
		var wg sync.WaitGroup
		for k, p := range servertest.Protocols {
			wg.Go(func() {
				in := typesRequest(k, 1+k%3)
				got, err := p.Infer(c, "m", in, nil)
				if err != nil {
					t.Errorf("%s, batching %v: %v", p.Name, batching, err)
					return
				}
				if diff := cmp.Diff(typesAnswer(in), got, cmpopts.EquateNaNs()); diff != "" {
					t.Errorf("%s, batching %v (-want +got):\n%s", p.Name, batching, diff)
				}
			})
		}
		wg.Wait()
	}
}

// TestGoldenCasesEveryProtocol runs each case of issue 11 through every
// protocol of the replica server.
func TestGoldenCasesEveryProtocol(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	tests := []struct {
		model   string
		inputs  []oip.Tensor
		outputs []string
		want    []oip.Tensor
	}{
		{"scalars", []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{1, 3}, Data: []float32{1, 2, 3}}}, []string{"sum", "mean"},
			[]oip.Tensor{{Name: "sum", Datatype: oip.FP32, Shape: []int64{}, Data: []float32{6}}, {Name: "mean", Datatype: oip.FP32, Shape: []int64{}, Data: []float32{2}}}},
		{"no_inputs", nil, nil,
			[]oip.Tensor{{Name: "answer", Datatype: oip.INT64, Shape: []int64{}, Data: []int64{42}}, {Name: "seq", Datatype: oip.FP32, Shape: []int64{3}, Data: []float32{1, 2, 3}}}},
		{"any_shape", []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{2, 1, 2}, Data: []float32{1, 2, 3, 4}}}, nil,
			[]oip.Tensor{{Name: "y", Datatype: oip.FP32, Shape: []int64{2, 1, 2}, Data: []float32{1, 2, 3, 4}}, {Name: "n", Datatype: oip.INT64, Shape: []int64{}, Data: []int64{4}}}},
		{"scalar_string", []oip.Tensor{{Name: "s", Datatype: oip.BYTES, Shape: []int64{}, Data: []string{"Grüße"}}}, nil,
			[]oip.Tensor{{Name: "echo", Datatype: oip.BYTES, Shape: []int64{}, Data: []string{"Grüße"}}}},
		{"nan_inf", []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{4}, Data: []float32{nan, inf, 0, -1}}}, nil,
			[]oip.Tensor{{Name: "same", Datatype: oip.FP32, Shape: []int64{4}, Data: []float32{nan, inf, 0, -1}}, {Name: "log", Datatype: oip.FP32, Shape: []int64{4}, Data: []float32{nan, inf, -inf, nan}}}},
		{"outputs", []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{2}, Data: []float32{1, 2}}}, []string{"twice"},
			[]oip.Tensor{{Name: "twice", Datatype: oip.FP32, Shape: []int64{2}, Data: []float32{2, 4}}}},
	}
	for _, tt := range tests {
		c := serveGolden(t, tt.model, server.Options{})
		for _, p := range servertest.Protocols {
			got, err := p.Infer(c, "m", tt.inputs, tt.outputs)
			if err != nil {
				t.Errorf("%s over %s: %v", tt.model, p.Name, err)
				continue
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateNaNs(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%s over %s (-want +got):\n%s", tt.model, p.Name, diff)
			}
		}
	}
}
