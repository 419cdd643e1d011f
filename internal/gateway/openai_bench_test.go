package gateway

import (
	"net/http/httptest"
	"testing"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/engine/httpproxy/openaitest"
)

// BenchmarkOpenAIForward measures the gateway's handler for one small chat
// completion routed by its body's model to an OpenAI server over loopback
// (the server's own cost included). The answer streams, so each iteration
// also writes it out, as the server does after the handler.
func BenchmarkOpenAIForward(b *testing.B) {
	up := httptest.NewServer(openaitest.Handler(openaitest.Options{Name: "up"}))
	b.Cleanup(up.Close)
	f := newOpenAIFixture(b, nil, openAIRoute("alpha", balance.NewEndpoint("r1", up.URL)))
	h := f.g.Handler(nil)
	ctx := inferCtx("/openai/v1/chat/completions", nil)
	ctx.Request.SetBodyString(`{"model":"alpha","messages":[{"role":"user","content":"hello there"}]}`)
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		h(ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		if len(ctx.Response.Body()) == 0 { // reads the stream to its end, and closes it
			b.Fatal("empty answer")
		}
	}
}
