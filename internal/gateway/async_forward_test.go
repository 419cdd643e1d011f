package gateway

import (
	"context"
	"encoding/binary"
	"math"
	"testing"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/routing"
)

// TestForwardBinaryAnswer runs an async request that asks for binary
// outputs through Forward to a real replica: the result keeps the
// answer's header length, so that a client fetching it (or a callback)
// can split the JSON header from the tensor bytes.
func TestForwardBinaryAnswer(t *testing.T) {
	f := newAsyncFixture(t, Async{}, nil)
	const ask = `{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}],"parameters":{"binary_data_output":true}}`
	res, err := f.g.Forward(context.Background(), &queue.Request{ID: queue.NewID(), Tenant: "acme", Deployment: "m",
		Priority: queue.PriorityInteractive, ContentType: "application/json", Body: []byte(ask)})
	if err != nil || res.Status != 200 {
		t.Fatalf("Forward = %d %q, %v; want 200", res.Status, res.Body, err)
	}
	n := int(res.HeaderLength)
	if n <= 0 || n+8 != len(res.Body) {
		t.Fatalf("header length %d of a %d-byte answer %q; want the JSON header's, followed by two FP32s", n, len(res.Body), res.Body)
	}
	data := res.Body[n:]
	got := []float32{math.Float32frombits(binary.LittleEndian.Uint32(data)), math.Float32frombits(binary.LittleEndian.Uint32(data[4:]))}
	if got[0] != 1 || got[1] != 2 {
		t.Errorf("binary output %v; want the echo [1 2]", got)
	}

	// A JSON answer has none.
	res, err = f.g.Forward(context.Background(), &queue.Request{ID: queue.NewID(), Tenant: "acme", Deployment: "m",
		ContentType: "application/json", Body: []byte(body)})
	if err != nil || res.Status != 200 || res.HeaderLength != 0 {
		t.Errorf("Forward of a JSON request = %d (header length %d) %q, %v; want 200 and no header length", res.Status, res.HeaderLength, res.Body, err)
	}
}

// BenchmarkAsyncForward measures Forward, the async worker's in-process
// request through the gateway's chain, for one small infer request to a
// real replica server over loopback (the replica's own cost included;
// compare against BenchmarkForward, the same request from a client).
func BenchmarkAsyncForward(b *testing.B) {
	f := newFixture(b, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(b, "r1")}})
	req := &queue.Request{ID: queue.NewID(), Tenant: "acme", Deployment: "m", Priority: queue.PriorityInteractive,
		ContentType: "application/json", Body: []byte(body)}
	b.ReportAllocs()
	for b.Loop() {
		res, err := f.g.Forward(context.Background(), req)
		if err != nil || res.Status != 200 {
			b.Fatalf("Forward = %d %q, %v; want 200", res.Status, res.Body, err)
		}
	}
}
