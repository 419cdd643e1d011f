package connlimit

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// CountSizeRefusals returns the grpc.Server option that calls onRefused for
// each call whose request message the server refused for its size
// (grpc.MaxRecvMsgSize). gRPC refuses such a message in its transport,
// before any interceptor or handler runs, so only a stats handler sees it:
// a call that ends ResourceExhausted without having received a message is
// one. A handler's own ResourceExhausted (a request over the element
// limit, say) comes after its message arrived and is not counted.
func CountSizeRefusals(onRefused func()) grpc.ServerOption {
	return grpc.StatsHandler(sizeRefusals{onRefused: onRefused})
}

// sizeRefusals is the stats.Handler of CountSizeRefusals.
type sizeRefusals struct{ onRefused func() }

// received records, in a call's context, that a message of it arrived.
type received struct{ atomic.Bool }

type receivedKey struct{}

func (sizeRefusals) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, receivedKey{}, &received{})
}

func (h sizeRefusals) HandleRPC(ctx context.Context, s stats.RPCStats) {
	r, _ := ctx.Value(receivedKey{}).(*received)
	if r == nil {
		return
	}
	switch s := s.(type) {
	case *stats.InPayload:
		r.Store(true)
	case *stats.End:
		if s.Error != nil && !r.Load() && status.Code(s.Error) == codes.ResourceExhausted {
			h.onRefused()
		}
	}
}

func (sizeRefusals) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (sizeRefusals) HandleConn(context.Context, stats.ConnStats) {}
