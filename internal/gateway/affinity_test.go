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
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestAffinityThroughTheGateway: a deployment routed by a consistent hash
// of a header or an input sends every request with one key to one replica,
// spreads different keys, and serves requests without a key by least
// outstanding requests.
func TestAffinityThroughTheGateway(t *testing.T) {
	eps := []*balance.Endpoint{replica(t, "r1"), replica(t, "r2"), replica(t, "r3"), replica(t, "r4")}
	post := func(t *testing.T, f *fixture, body string, header map[string]string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, f.url+"/v2/models/m/infer", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("= %d %s; want 200", resp.StatusCode, out)
		}
		return resp.Header.Get("Ebb-Replica")
	}
	userBody := func(user string, rest int) string {
		return fmt.Sprintf(`{"inputs":[{"name":"input","datatype":"FP32","shape":[1,2],"data":[%s,%d]}]}`, user, rest)
	}
	tests := []struct {
		name    string
		routing *serving.Routing
		request func(key, i int) (string, map[string]string)
	}{
		{name: "header", routing: &serving.Routing{Policy: serving.RoutingConsistentHash, Key: &serving.RoutingKey{Header: "X-Session"}},
			request: func(key, i int) (string, map[string]string) {
				return userBody("1", i), map[string]string{"X-Session": fmt.Sprint("session-", key)}
			}},
		{name: "input", routing: &serving.Routing{Policy: serving.RoutingConsistentHash, Key: &serving.RoutingKey{Input: "input"}},
			request: func(key, i int) (string, map[string]string) { return userBody(fmt.Sprint(key), i), nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, routing.Route{Deployment: "m", Endpoints: eps, Routing: tt.routing})
			if f.tab.Lookup("m").Ring() == nil {
				t.Fatal("route published without a ring")
			}
			owners := map[string]bool{}
			for key := range 40 {
				body, h := tt.request(key, 0)
				first := post(t, f, body, h)
				for i := 1; i < 5; i++ {
					body, h := tt.request(key, i)
					if got := post(t, f, body, h); got != first {
						t.Fatalf("key %d served by %s, then by %s", key, first, got)
					}
				}
				owners[first] = true
			}
			if len(owners) < 3 {
				t.Errorf("40 keys on %d of 4 replicas: %v; want them spread", len(owners), owners)
			}
			// For the header policy this request has no key: it is
			// served by least outstanding requests.
			post(t, f, `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,1],"data":[1]}]}`, nil)
		})
	}
	t.Run("least outstanding has no ring", func(t *testing.T) {
		f := newFixture(t, routing.Route{Deployment: "m", Endpoints: eps})
		if f.tab.Lookup("m").Ring() != nil {
			t.Fatal("a route without routing has a ring")
		}
	})
}

// TestRoutingKeys: what key each policy takes from a request, and that
// equal keys written differently (42 and "42", REST and gRPC) hash alike.
func TestRoutingKeys(t *testing.T) {
	header := &serving.Routing{Policy: serving.RoutingConsistentHash, Key: &serving.RoutingKey{Header: "X-Session"}}
	input := &serving.Routing{Policy: serving.RoutingConsistentHash, Key: &serving.RoutingKey{Input: "user"}}
	prefix := &serving.Routing{Policy: serving.RoutingPrefix, PrefixBytes: 8}
	prefixHeader := &serving.Routing{Policy: serving.RoutingPrefix, PrefixBytes: 4, Key: &serving.RoutingKey{Header: "X-Prompt"}}
	rest := func(r *serving.Routing, h map[string]string, body string, openAI bool) (uint64, keyState) {
		var hdr fasthttp.RequestHeader
		for k, v := range h {
			hdr.Set(k, v)
		}
		return restKey(r, &hdr, []byte(body), openAI)
	}
	k42 := balance.HashKey("42")
	tests := []struct {
		name     string
		r        *serving.Routing
		header   map[string]string
		body     string
		openAI   bool
		want     uint64
		wantKind keyState
	}{
		{name: "header", r: header, header: map[string]string{"X-Session": "42"}, want: k42, wantKind: keyFound},
		{name: "header absent", r: header, wantKind: keyNone},
		{name: "input number", r: input, body: `{"inputs":[{"name":"user","data":[42,7]}]}`, want: k42, wantKind: keyFound},
		{name: "input string", r: input, body: `{"inputs":[{"name":"x","data":[1]},{"name":"user","data":[["42"]]}]}`, want: k42, wantKind: keyFound},
		{name: "input missing", r: input, body: `{"inputs":[{"name":"x","data":[1]}]}`, wantKind: keyNone},
		{name: "input in binary data", r: input, header: map[string]string{binaryHeaderLength: "43"},
			body: `{"inputs":[{"name":"user","shape":[1]}]}` + "\x2a\x00\x00\x00", wantKind: keyNone},
		{name: "not JSON", r: input, body: `{"inputs":`, wantKind: keyNone},
		{name: "prompt prefix", r: prefix, openAI: true, body: `{"model":"m","prompt":"You are a helpful bot. Q1"}`,
			want: balance.PrefixKey("You are a helpful bot. Q2", 8), wantKind: keyFound},
		{name: "chat prefix", r: prefix, openAI: true, body: `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]}`,
			want: balance.PrefixKey("system\nBe brief.\nuser\nhi\n", 8), wantKind: keyFound},
		{name: "prefix of a header", r: prefixHeader, header: map[string]string{"X-Prompt": "abcdefgh"}, want: balance.PrefixKey("abcd", 4), wantKind: keyFound},
		{name: "prefix of an OIP request has no prompt", r: prefix, body: `{"inputs":[]}`, wantKind: keyNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, kind := rest(tt.r, tt.header, tt.body, tt.openAI)
			if kind != tt.wantKind || (kind == keyFound && got != tt.want) {
				t.Fatalf("restKey = %x, %v; want %x, %v", got, kind, tt.want, tt.wantKind)
			}
		})
	}

	grpcTests := []struct {
		name     string
		r        *serving.Routing
		md       metadata.MD
		req      *oipgrpc.ModelInferRequest
		wantKind keyState
	}{
		{name: "metadata", r: header, md: metadata.Pairs("x-session", "42"), wantKind: keyFound},
		{name: "int64 input", r: input, req: &oipgrpc.ModelInferRequest{Inputs: []*oipgrpc.ModelInferRequest_InferInputTensor{
			{Name: "user", Contents: &oipgrpc.InferTensorContents{Int64Contents: []int64{42, 7}}}}}, wantKind: keyFound},
		{name: "bytes input", r: input, req: &oipgrpc.ModelInferRequest{Inputs: []*oipgrpc.ModelInferRequest_InferInputTensor{
			{Name: "user", Contents: &oipgrpc.InferTensorContents{BytesContents: [][]byte{[]byte("42")}}}}}, wantKind: keyFound},
		{name: "raw contents", r: input, req: &oipgrpc.ModelInferRequest{Inputs: []*oipgrpc.ModelInferRequest_InferInputTensor{{Name: "user"}},
			RawInputContents: [][]byte{{42, 0, 0, 0}}}, wantKind: keyNone},
		{name: "no metadata", r: header, wantKind: keyNone},
	}
	for _, tt := range grpcTests {
		t.Run("grpc "+tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.md != nil {
				ctx = metadata.NewIncomingContext(ctx, tt.md)
			}
			got, kind := grpcKey(ctx, tt.r, tt.req)
			if kind != tt.wantKind || (kind == keyFound && got != k42) {
				t.Fatalf("grpcKey = %x, %v; want %x (the REST key of 42), %v", got, kind, k42, tt.wantKind)
			}
		})
	}
}

// TestMissingKeyRejected: with spec.routing.missingKey: reject, a request
// without the key gets 400 naming it (REST and gRPC), one with it is
// served; without reject it is served by least outstanding requests.
func TestMissingKeyRejected(t *testing.T) {
	eps := []*balance.Endpoint{replica(t, "r1"), replica(t, "r2")}
	r := &serving.Routing{Policy: serving.RoutingConsistentHash, Key: &serving.RoutingKey{Header: "X-Session"}, MissingKey: serving.MissingKeyReject}
	f := newFixture(t, routing.Route{Deployment: "m", Endpoints: eps, Routing: r})
	const body = `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,1],"data":[1]}]}`
	for _, tt := range []struct {
		name     string
		header   map[string]string
		wantCode int
		wantIn   string
	}{
		{name: "without the key", wantCode: http.StatusBadRequest, wantIn: `routes requests by their header X-Session (spec.routing.missingKey: reject)`},
		{name: "with the key", header: map[string]string{"X-Session": "s1"}, wantCode: http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, f.url+"/v2/models/m/infer", strings.NewReader(body))
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantCode || !strings.Contains(string(out), tt.wantIn) {
				t.Fatalf("= %d %s; want %d with %q", resp.StatusCode, out, tt.wantCode, tt.wantIn)
			}
		})
	}
	t.Run("grpc without the key", func(t *testing.T) {
		var a attempt
		err := grpcKeyRequired(context.Background(), &a, f.tab.Lookup("m"))
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "header X-Session") {
			t.Fatalf("grpcKeyRequired = %v; want InvalidArgument naming the header", err)
		}
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-session", "s1"))
		a = attempt{}
		if err := grpcKeyRequired(ctx, &a, f.tab.Lookup("m")); err != nil || a.keyState != keyFound {
			t.Fatalf("grpcKeyRequired with the key = %v (key %v)", err, a.keyState)
		}
	})
}
