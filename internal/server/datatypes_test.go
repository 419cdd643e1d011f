package server

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/server/servertest"
)

// identityModel has one input per datatype, named after it in lower case
// ("fp16"), of shape [-1, 2], and returns each as output "<name>_out". It
// records the batch sizes it saw and the outputs asked of it.
type identityModel struct {
	// types are the datatypes it takes; nil means all.
	types []string

	mu      sync.Mutex
	rows    []int64
	outputs [][]string
}

func (m *identityModel) Metadata() oip.ModelMetadata {
	var meta oip.ModelMetadata
	types := m.types
	if types == nil {
		types = oip.Datatypes
	}
	for _, dt := range types {
		name := strings.ToLower(dt)
		meta.Inputs = append(meta.Inputs, oip.TensorMetadata{Name: name, Datatype: dt, Shape: []int64{-1, 2}})
		meta.Outputs = append(meta.Outputs, oip.TensorMetadata{Name: name + "_out", Datatype: dt, Shape: []int64{-1, 2}})
	}
	return meta
}

func (m *identityModel) Predict(ctx context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
	return m.PredictOutputs(ctx, in, nil)
}

func (m *identityModel) PredictOutputs(_ context.Context, in []oip.Tensor, outputs []string) ([]oip.Tensor, error) {
	m.mu.Lock()
	m.rows = append(m.rows, in[0].Shape[0])
	m.outputs = append(m.outputs, outputs)
	m.mu.Unlock()
	var out []oip.Tensor
	for _, t := range in {
		t.Name += "_out"
		if len(outputs) == 0 || strings.Contains(strings.Join(outputs, ","), t.Name) {
			out = append(out, t)
		}
	}
	return out, nil
}

// everyDatatype is a request for identityModel, rows of 2, with each
// datatype's extremes and special values; k varies the values.
func everyDatatype(k, rows int) []oip.Tensor { return datatypesRequest(oip.Datatypes, k, rows) }

// datatypesRequest is everyDatatype for the datatypes types.
func datatypesRequest(types []string, k, rows int) []oip.Tensor {
	n := 2 * rows
	var out []oip.Tensor
	for _, dt := range types {
		t := oip.Tensor{Name: strings.ToLower(dt), Datatype: dt, Shape: []int64{int64(rows), 2}}
		f := func(i int) float64 {
			switch (i + k) % 5 {
			case 0:
				return float64(k) + 0.5
			case 1:
				return math.NaN()
			case 2:
				return math.Inf(1)
			case 3:
				return math.Inf(-1)
			}
			return -2
		}
		switch dt {
		case oip.BOOL:
			t.Data = fill(n, func(i int) bool { return (i+k)%3 == 0 })
		case oip.INT8:
			t.Data = fill(n, func(i int) int8 { return []int8{math.MinInt8, math.MaxInt8, int8(k)}[(i+k)%3] })
		case oip.INT16:
			t.Data = fill(n, func(i int) int16 { return []int16{math.MinInt16, math.MaxInt16, int16(k)}[(i+k)%3] })
		case oip.INT32:
			t.Data = fill(n, func(i int) int32 { return []int32{math.MinInt32, math.MaxInt32, int32(k)}[(i+k)%3] })
		case oip.INT64:
			t.Data = fill(n, func(i int) int64 { return []int64{math.MinInt64, math.MaxInt64, int64(k)}[(i+k)%3] })
		case oip.UINT8:
			t.Data = fill(n, func(i int) uint8 { return []uint8{0, math.MaxUint8, uint8(k)}[(i+k)%3] })
		case oip.UINT16:
			t.Data = fill(n, func(i int) uint16 { return []uint16{0, math.MaxUint16, uint16(k)}[(i+k)%3] })
		case oip.UINT32:
			t.Data = fill(n, func(i int) uint32 { return []uint32{0, math.MaxUint32, uint32(k)}[(i+k)%3] })
		case oip.UINT64:
			t.Data = fill(n, func(i int) uint64 { return []uint64{0, math.MaxUint64, uint64(k)}[(i+k)%3] })
		case oip.FP16:
			t.Data = fill(n, func(i int) oip.Float16 { return oip.Float16From(float32(f(i))) })
		case oip.BF16:
			t.Data = fill(n, func(i int) oip.BFloat16 { return oip.BFloat16From(float32(f(i))) })
		case oip.FP32:
			t.Data = fill(n, func(i int) float32 { return float32(f(i)) })
		case oip.FP64:
			t.Data = fill(n, f)
		case oip.BYTES:
			t.Data = fill(n, func(i int) string { return []string{"", "Grüße", `"\` + "\n", strconv.Itoa(k)}[(i+k)%4] })
		}
		out = append(out, t)
	}
	return out
}

func fill[T any](n int, f func(int) T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

// renamed returns inputs as identityModel answers them.
func renamed(inputs []oip.Tensor) []oip.Tensor {
	out := make([]oip.Tensor, len(inputs))
	for i, t := range inputs {
		t.Name += "_out"
		out[i] = t
	}
	return out
}

// TestEveryDatatypeEveryProtocol sends every datatype through every
// protocol, batching off and on; with batching on, requests of every
// protocol arrive together and share batches.
func TestEveryDatatypeEveryProtocol(t *testing.T) {
	for _, batching := range []bool{false, true} {
		t.Run(fmt.Sprintf("batching %v", batching), func(t *testing.T) {
			m := &identityModel{}
			opts := Options{}
			if batching {
				opts.Batching = BatchingPolicy(64, nil, 200*time.Millisecond)
			}
			c := servertest.Start(t, New("m", m, opts))
			var wg sync.WaitGroup
			for k, p := range servertest.Protocols {
				wg.Go(func() {
					in := everyDatatype(k, 1+k%2)
					got, err := p.Infer(c, "m", in, nil)
					if err != nil {
						t.Errorf("%s: %v", p.Name, err)
						return
					}
					if diff := cmp.Diff(renamed(in), got, cmpopts.EquateNaNs()); diff != "" {
						t.Errorf("%s (-want +got):\n%s", p.Name, diff)
					}
				})
				if !batching {
					wg.Wait()
				}
			}
			wg.Wait()
			if batching && maxRows(m) <= 2 {
				t.Errorf("the model saw batches of %v rows; want the requests batched together", m.rows)
			}
		})
	}
}

func maxRows(m *identityModel) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var top int64
	for _, r := range m.rows {
		top = max(top, r)
	}
	return top
}

// TestRequestedOutputsEveryProtocol: a request naming outputs gets those
// alone, and the model is asked for those alone.
func TestRequestedOutputsEveryProtocol(t *testing.T) {
	for _, batching := range []bool{false, true} {
		m := &identityModel{}
		opts := Options{}
		if batching {
			opts.Batching = BatchingPolicy(8, nil, 0)
		}
		c := servertest.Start(t, New("m", m, opts))
		for _, p := range servertest.Protocols {
			in := everyDatatype(1, 1)
			got, err := p.Infer(c, "m", in, []string{"fp16_out", "bool_out"})
			if err != nil {
				t.Fatalf("%s: %v", p.Name, err)
			}
			want := []oip.Tensor{renamed(in)[0], renamed(in)[9]} // the model's order
			if diff := cmp.Diff(want, got, cmpopts.EquateNaNs()); diff != "" {
				t.Errorf("%s, batching %v (-want +got):\n%s", p.Name, batching, diff)
			}
			m.mu.Lock()
			asked := m.outputs[len(m.outputs)-1]
			m.mu.Unlock()
			if diff := cmp.Diff([]string{"fp16_out", "bool_out"}, asked); diff != "" {
				t.Errorf("%s, batching %v: the model was asked for (-want +got):\n%s", p.Name, batching, diff)
			}
		}
	}
}

// TestGRPCTypedContents sends every datatype that has a typed field in
// InferTensorContents that way (FP16 and BF16 have none, so a request with
// them goes raw), and checks the response comes back typed.
func TestGRPCTypedContents(t *testing.T) {
	var types []string
	for _, dt := range oip.Datatypes {
		if dt != oip.FP16 && dt != oip.BF16 {
			types = append(types, dt)
		}
	}
	c, _ := serveGRPC(t, New("m", &identityModel{types: types}, Options{}))
	in := datatypesRequest(types, 2, 2)
	req := &oipgrpc.ModelInferRequest{ModelName: "m"}
	if err := oipgrpc.SetInputs(req, in, false); err != nil {
		t.Fatal(err)
	}
	if len(req.RawInputContents) != 0 {
		t.Fatal("SetInputs went raw")
	}
	resp, err := c.ModelInfer(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.RawOutputContents) != 0 {
		t.Error("a typed request got a raw response")
	}
	got, err := oipgrpc.OutputTensors(resp)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(renamed(in), got, cmpopts.EquateNaNs()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// anyModel declares nothing and takes any inputs, echoing them.
type anyModel struct{ anyShapeModel }

func (anyModel) Metadata() oip.ModelMetadata { return oip.ModelMetadata{} }
func (anyModel) AnyInputs() bool             { return true }

// TestAnyInputs: a model that takes whatever inputs a request carries gets
// them in the request's order, each checked for form only.
func TestAnyInputs(t *testing.T) {
	s := New("m", anyModel{}, Options{MaxRequestElements: 10})
	in := []oip.Tensor{
		{Name: "z", Datatype: oip.UINT8, Shape: []int64{2}, Data: []uint8{1, 2}},
		{Name: "a", Datatype: oip.BYTES, Shape: []int64{}, Data: []string{"x"}},
	}
	got, err := s.CheckInputs(in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, got); diff != "" {
		t.Errorf("CheckInputs (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		in      []oip.Tensor
		wantErr string
	}{
		{append(in, in[0]), `input "z" appears more than once`},
		{[]oip.Tensor{{Name: "big", Datatype: oip.FP32, Shape: []int64{11}, Data: make([]float32, 11)}}, "more than the limit of 10"},
		{[]oip.Tensor{{Name: "bad", Datatype: oip.FP32, Shape: []int64{2}, Data: []float32{1}}}, `input "bad": shape [2] holds 2 elements but data has 1`},
	} {
		if _, err := s.CheckInputs(tt.in); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("CheckInputs error = %v; want %q", err, tt.wantErr)
		}
	}
}
