package oipgrpc

import (
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ebb-ml/ebb/internal/oip"
)

// FuzzInputTensors reads a ModelInferRequest off the wire and converts its
// inputs, typed contents or raw_input_contents, to tensors. For any bytes:
// no panic; a refusal is an InvalidArgument status; memory is bounded by
// the bytes received; and accepted tensors pass oip's Check and come back
// unchanged through SetInputs, the wire and InputTensors, both typed and raw.
func FuzzInputTensors(f *testing.F) {
	fuzzTensors(f, func() *ModelInferRequest { return &ModelInferRequest{ModelName: "m"} }, SetInputs, InputTensors)
}

// FuzzOutputTensors is FuzzInputTensors for a ModelInferResponse, as a
// client reads it, through OutputTensors and SetOutputs.
func FuzzOutputTensors(f *testing.F) {
	fuzzTensors(f, func() *ModelInferResponse { return &ModelInferResponse{ModelName: "m"} }, SetOutputs, OutputTensors)
}

// fuzzTensors fuzzes the tensors of message M: seeds from the package's
// tensors, typed and raw, then the properties FuzzInputTensors states.
func fuzzTensors[M proto.Message](f *testing.F, newMsg func() M, set func(M, []oip.Tensor, bool) error, get func(M) ([]oip.Tensor, error)) {
	halves := []oip.Tensor{
		{Name: "h", Datatype: oip.FP16, Shape: []int64{2}, Data: []oip.Float16{oip.Float16From(1.5), 0x7e00}},
		{Name: "bf", Datatype: oip.BF16, Shape: []int64{}, Data: []oip.BFloat16{oip.BFloat16From(-3)}},
	}
	for _, seed := range [][]oip.Tensor{tensors, halves} {
		for _, raw := range []bool{false, true} {
			m := newMsg()
			if err := set(m, seed, raw); err != nil {
				f.Fatal(err)
			}
			b, err := proto.Marshal(m)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		var ts []oip.Tensor
		var err error
		bounded(t, len(wire), func() {
			m := newMsg()
			if proto.Unmarshal(wire, m) != nil {
				err = errNotMessage
				return
			}
			ts, err = get(m)
		})
		if err == errNotMessage {
			return
		}
		if err != nil {
			checkInvalid(t, err)
			return
		}
		checkTensors(t, ts)
		for _, raw := range []bool{false, true} {
			m := newMsg()
			if err := set(m, ts, raw); err != nil {
				t.Fatalf("setting (raw=%v) the tensors read back: %v", raw, err)
			}
			b, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			back := newMsg()
			if err := proto.Unmarshal(b, back); err != nil {
				t.Fatal(err)
			}
			again, err := get(back)
			if err != nil {
				t.Fatalf("reading tensors after setting them (raw=%v): %v", raw, err)
			}
			sameTensors(t, ts, again)
		}
	})
}

var errNotMessage = status.Error(codes.Unknown, "not a protobuf message")

// bounded fails t when f allocates more than a small multiple of the n
// bytes received: a declared shape must not make the server allocate.
func bounded(t *testing.T, n int, f func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	if got, bound := after.TotalAlloc-before.TotalAlloc, 64*uint64(n)+1<<20; got > bound {
		t.Fatalf("decoding %d bytes allocated %d (bound %d)", n, got, bound)
	}
}

func checkInvalid(t *testing.T, err error) {
	t.Helper()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("error %v has code %v, want InvalidArgument", err, status.Code(err))
	}
}

func checkTensors(t *testing.T, ts []oip.Tensor) {
	t.Helper()
	for _, tensor := range ts {
		if err := tensor.Check(); err != nil {
			t.Fatalf("accepted a tensor that Check refuses: %v", err)
		}
	}
}

func sameTensors(t *testing.T, want, got []oip.Tensor) {
	t.Helper()
	if diff := cmp.Diff(want, got, cmpopts.EquateNaNs(), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("tensors changed on a round trip (-before +after):\n%s", diff)
	}
}
