package gateway

import (
	"testing"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/routing"
)

// BenchmarkStageAuth measures the auth stage alone for one infer request
// whose token the verifier has cached: read the header, look the token up,
// match predict:GLOB.
func BenchmarkStageAuth(b *testing.B) {
	tokens := &tokenMap{m: map[string]auth.Token{}}
	tok := tokens.add(b, "predict:fraud-*")
	g := New(&routing.Table{}, nil, Options{Auth: auth.NewVerifier(tokens, 0, nil)})
	ctx := inferCtx("/v2/models/fraud-eu/infer", map[string]string{"Authorization": "Bearer " + tok})
	name := []byte("fraud-eu")
	if _, ok := g.authorize(ctx, name); !ok { // verify once; the rest hit the cache
		b.Fatalf("refused: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := g.authorize(ctx, name); !ok {
			b.Fatalf("refused: %d", ctx.Response.StatusCode())
		}
	}
	if tokens.reads != 1 {
		b.Errorf("store read %d times; want 1", tokens.reads)
	}
}

// BenchmarkForwardAuth is BenchmarkForward with the auth stage on and a
// cached predict token: the difference is the stage's cost in the chain.
// With auth off (loopback) the stage costs a nil check: BenchmarkForward.
func BenchmarkForwardAuth(b *testing.B) {
	tokens := &tokenMap{m: map[string]auth.Token{}}
	tok := tokens.add(b, "predict:m")
	g := authFixture(b, auth.NewVerifier(tokens, 0, nil), routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(b, "r1")}})
	b.Cleanup(g.Close)
	benchHandler(b, g.Handler(nil), inferCtx("/v2/models/m/infer", map[string]string{"Authorization": "Bearer " + tok}), status200)
}
