package oip

import (
	"encoding/json"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// decodeAllocBound is the most Decode may allocate for an input of n bytes
// of JSON: a small multiple of what it received, never of what a shape
// declares.
func decodeAllocBound(n int) uint64 { return 256*uint64(n) + 1<<20 }

// allocated returns the bytes the process allocated while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// FuzzDecode decodes one OIP v2 JSON input tensor, as the REST infer
// handler does: Decode never panics; what it accepts passes Check and has
// as many elements as its shape describes; it round-trips (encode the data
// as AppendData writes it and decode again: the same tensor); and it
// allocates in proportion to the bytes received.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"name":"input","shape":[2,2],"datatype":"FP32","data":[1,2,3,4.5]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var in RequestInput
		if json.Unmarshal(body, &in) != nil {
			return
		}
		var tensor Tensor
		var err error
		if got := allocated(func() { tensor, err = Decode(in) }); got > decodeAllocBound(len(body)) {
			t.Fatalf("Decode of a %d-byte input allocated %d bytes (bound %d)", len(body), got, decodeAllocBound(len(body)))
		}
		if err != nil {
			return
		}
		if err := tensor.Check(); err != nil {
			t.Fatalf("Decode accepted a tensor that Check refuses: %v", err)
		}
		if _, err := tensor.Float32s(); (err == nil) != (tensor.Datatype != BYTES && tensor.Datatype != BOOL) {
			t.Fatalf("Float32s on %s: %v", tensor.Datatype, err)
		}

		data, err := AppendData(nil, tensor)
		if err != nil {
			t.Fatalf("encoding decoded data %#v: %v", tensor.Data, err)
		}
		// NaN and infinities are bare tokens, which ParseRequest quotes.
		data, _ = quoteSpecialFloats(data)
		again, err := Decode(RequestInput{Name: tensor.Name, Shape: tensor.Shape, Datatype: tensor.Datatype, Data: data})
		if err != nil {
			t.Fatalf("decoding the re-encoded tensor %s: %v", data, err)
		}
		if diff := cmp.Diff(tensor, again, cmpopts.EquateNaNs(), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("decode, encode, decode changed the tensor (-first +second):\n%s", diff)
		}
	})
}

// FuzzInferMessages decodes infer requests and responses: decoding never
// panics, and what decodes encodes and decodes to the same message.
func FuzzInferMessages(f *testing.F) {
	f.Add([]byte(`{"id":"1","inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"outputs":[{"name":"y"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		roundTrip[InferRequest](t, body)
		roundTrip[InferResponse](t, body)
		roundTrip[ModelMetadata](t, body)
	})
}

func roundTrip[M any](t *testing.T, body []byte) {
	t.Helper()
	var first M
	if json.Unmarshal(body, &first) != nil {
		return
	}
	enc, err := json.Marshal(first)
	if err != nil {
		t.Fatalf("encoding a decoded %T: %v", first, err)
	}
	var second M
	if err := json.Unmarshal(enc, &second); err != nil {
		t.Fatalf("decoding the re-encoded %T %s: %v", first, enc, err)
	}
	// RawMessage data is kept verbatim, whitespace and all, and compacted
	// by Marshal: compare messages by their encodings.
	enc2, err := json.Marshal(second)
	if err != nil {
		t.Fatalf("encoding %T again: %v", second, err)
	}
	if string(enc) != string(enc2) {
		t.Fatalf("%T changed on a round trip:\n first %s\nsecond %s", first, enc, enc2)
	}
}

// TestDecodeAllocBoundedByData is the regression test for issue 10's "an
// 80-byte request can take 17 GB": a tiny body declaring 16M elements must
// not allocate 64 MB.
func TestDecodeAllocBoundedByData(t *testing.T) {
	in := RequestInput{Name: "x", Shape: []int64{1 << 24}, Datatype: FP32, Data: json.RawMessage(`[0.0]`)}
	var err error
	got := allocated(func() { _, err = Decode(in) })
	if err == nil {
		t.Fatal("Decode accepted 1 element for shape [16777216]")
	}
	if bound := decodeAllocBound(64); got > bound {
		t.Errorf("Decode of a tiny input declaring shape [16777216] allocated %d bytes, want at most %d", got, bound)
	}
}
