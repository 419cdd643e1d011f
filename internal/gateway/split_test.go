package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/stats"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// splitFixture routes deployment m to a primary replica serving m:3 and a
// canary track m.canary serving m:4, with the canary's weight.
func splitFixture(t *testing.T, canary int32) *fixture {
	t.Helper()
	split, _ := routing.NewSplit([]routing.Track{{Key: "m", Tag: "v3", Weight: 100 - canary}, {Key: "m.canary", Tag: "canary", Weight: canary}})
	f := newFixture(t, routing.Route{Deployment: "m", Version: "3", Endpoints: []*balance.Endpoint{versionedReplica(t, "p1", "m:3")}, Split: split})
	f.tab.Publish(routing.Route{Deployment: "m.canary", Version: "4", Endpoints: []*balance.Endpoint{versionedReplica(t, "c1", "m:4")}, Stats: &stats.Recorder{}})
	return f
}

func (f *fixture) postWith(t *testing.T, path string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(out)
}

func TestSplitPins(t *testing.T) {
	f := splitFixture(t, 10)
	tests := []struct {
		name        string
		path        string
		header      map[string]string
		wantCode    int
		wantReplica string
		wantTag     string
		wantInBody  string
	}{
		{name: "header tag", path: "/v2/models/m/infer", header: map[string]string{VersionHeader: "canary"}, wantCode: 200, wantReplica: "c1", wantTag: "canary"},
		{name: "header version number", path: "/v2/models/m/infer", header: map[string]string{VersionHeader: "4"}, wantCode: 200, wantReplica: "c1", wantTag: "canary"},
		{name: "header primary tag", path: "/v2/models/m/infer", header: map[string]string{VersionHeader: "v3"}, wantCode: 200, wantReplica: "p1", wantTag: "v3"},
		{name: "path version", path: "/v2/models/m/versions/4/infer", wantCode: 200, wantReplica: "c1", wantTag: "canary"},
		{name: "path version of the primary", path: "/v2/models/m/versions/3/infer", wantCode: 200, wantReplica: "p1", wantTag: "v3"},
		{name: "unknown tag", path: "/v2/models/m/infer", header: map[string]string{VersionHeader: "nope"}, wantCode: 404, wantInBody: `serves no version \"nope\": it serves v3 (version 3, 90%), canary (version 4, 10%)`},
		{name: "unknown path version", path: "/v2/models/m/versions/9/infer", wantCode: 404, wantInBody: `serves no version \"9\"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, out := f.postWith(t, tt.path, tt.header)
			if resp.StatusCode != tt.wantCode || !strings.Contains(out, tt.wantInBody) {
				t.Fatalf("= %d %s; want %d with %q", resp.StatusCode, out, tt.wantCode, tt.wantInBody)
			}
			if got := resp.Header.Get("Ebb-Replica"); got != tt.wantReplica {
				t.Errorf("answered by %q; want %q", got, tt.wantReplica)
			}
			if got := resp.Header.Get(VersionHeader); got != tt.wantTag {
				t.Errorf("%s = %q; want %q", VersionHeader, got, tt.wantTag)
			}
		})
	}
}

func TestSplitWeights(t *testing.T) {
	f := splitFixture(t, 25)
	const n = 400
	got := map[string]int{}
	for range n {
		resp, out := f.postWith(t, "/v2/models/m/infer", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("= %d %s", resp.StatusCode, out)
		}
		got[resp.Header.Get(VersionHeader)]++
	}
	// 25% of 400 is 100, with a standard deviation near 8.7: 60..140 is
	// more than four of them either way.
	if c := got["canary"]; c < 60 || c > 140 || got["v3"]+c != n {
		t.Errorf("answered by track: %v; want about 100 of %d from the canary", got, n)
	}
}

func TestSplitStickyKeys(t *testing.T) {
	// A key keeps its track at one weight, and a key on the canary stays
	// there as the canary grows.
	onCanary := map[string]bool{}
	for _, w := range []int32{5, 25, 50, 100} {
		f := splitFixture(t, w)
		n := 0
		for i := range 100 {
			key := fmt.Sprintf("user-%d", i)
			var tags []string
			for range 2 {
				resp, out := f.postWith(t, "/v2/models/m/infer", map[string]string{RouteKeyHeader: key})
				if resp.StatusCode != 200 {
					t.Fatalf("= %d %s", resp.StatusCode, out)
				}
				tags = append(tags, resp.Header.Get(VersionHeader))
			}
			if tags[0] != tags[1] {
				t.Fatalf("weight %d: key %s went to %v", w, key, tags)
			}
			if onCanary[key] && tags[0] != "canary" {
				t.Errorf("weight %d: key %s left the canary it had at a lower weight", w, key)
			}
			if tags[0] == "canary" {
				onCanary[key] = true
				n++
			}
		}
		if w == 100 && n != 100 {
			t.Errorf("weight 100: %d of 100 keys on the canary", n)
		}
	}
}

func TestSplitGRPC(t *testing.T) {
	primary, canary := grpcReplica(t, "p1"), grpcReplica(t, "c1")
	split, _ := routing.NewSplit([]routing.Track{{Key: "m", Tag: "v3", Weight: 90}, {Key: "m.canary", Tag: "canary", Weight: 10}})
	f := newGRPCFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{primary}, Split: split}, nil)
	f.tab.Publish(routing.Route{Deployment: "m.canary", Endpoints: []*balance.Endpoint{canary}, Stats: &stats.Recorder{}})
	req := &oipgrpc.ModelInferRequest{ModelName: "m", Inputs: []*oipgrpc.ModelInferRequest_InferInputTensor{{
		Name: "input", Datatype: "FP32", Shape: []int64{1, 1}, Contents: &oipgrpc.InferTensorContents{Fp32Contents: []float32{1}},
	}}}
	for _, tt := range []struct{ pin, wantReplica string }{{"canary", "c1"}, {"v3", "p1"}} {
		var hdr metadata.MD
		ctx := metadata.AppendToOutgoingContext(context.Background(), "ebb-version", tt.pin)
		if _, err := f.client.ModelInfer(ctx, req, grpc.Header(&hdr)); err != nil {
			t.Fatalf("pinned to %s: %v", tt.pin, err)
		}
		if got := hdr.Get("ebb-replica"); len(got) != 1 || got[0] != tt.wantReplica {
			t.Errorf("pinned to %s: answered by %v; want %s", tt.pin, got, tt.wantReplica)
		}
		if got := hdr.Get("ebb-version"); len(got) != 1 || got[0] != tt.pin {
			t.Errorf("pinned to %s: ebb-version %v", tt.pin, got)
		}
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "ebb-version", "nope")
	if _, err := f.client.ModelInfer(ctx, req); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "canary (10%)") {
		t.Errorf("pinned to an unknown tag: %v; want NotFound naming the targets", err)
	}
}
