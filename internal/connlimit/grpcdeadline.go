package connlimit

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/tap"
)

// ErrGRPCReadTimeout is the cause (context.Cause) a gRPC call's context is
// cancelled with when its request message did not arrive in time.
var ErrGRPCReadTimeout = errors.New("gRPC request message not received within the body timeout (--body-timeout)")

// msgDeadline bounds the wait of one gRPC call for the client's request
// message (Limits.BodyTimeout): a client that opens a call and sends its
// message a byte a second, or never, holds a stream and a goroutine only
// that long. The handler's own time is not bounded, as for REST: a held
// request or a long inference goes on. When the bound passes, the call's
// context is cancelled; gRPC's transport waits on that context for the
// request's bytes, so the call ends.
//
// A response needs no bound of its own here: for a unary call gRPC queues
// the whole response to its transport when the handler returns and ends
// the call, so a client that does not read holds no handler, only bytes in
// its connection, which keepalive and the idle timeout govern.
type msgDeadline struct {
	read      time.Duration
	cancel    context.CancelCauseFunc
	onTimeout func()

	mu    sync.Mutex
	timer *time.Timer
	cause error // the bound now armed; nil when none is
	done  bool  // the call ended: arm nothing more
}

type msgDeadlineKey struct{}

// arm starts the bound of d for a wait of cause (nothing when d is 0).
func (m *msgDeadline) arm(d time.Duration, cause error) {
	if d <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done {
		return
	}
	m.cause = cause
	if m.timer == nil {
		m.timer = time.AfterFunc(d, m.expire)
		return
	}
	m.timer.Reset(d)
}

// disarm stops the bound armed, if any.
func (m *msgDeadline) disarm() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cause = nil
	if m.timer != nil {
		m.timer.Stop()
	}
}

// end stops every bound for good: the call is over.
func (m *msgDeadline) end() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.done, m.cause = true, nil
	if m.timer != nil {
		m.timer.Stop()
	}
}

func (m *msgDeadline) expire() {
	m.mu.Lock()
	cause := m.cause
	m.cause = nil
	m.mu.Unlock()
	if cause == nil {
		return // disarmed as it fired
	}
	if m.onTimeout != nil {
		m.onTimeout()
	}
	m.cancel(cause)
}

// tap starts a call's bounds as its stream opens, before gRPC reads its
// request message: the wait for that message is bounded from here.
func (l Limits) tap(ctx context.Context, _ *tap.Info) (context.Context, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	m := &msgDeadline{read: l.BodyTimeout, cancel: cancel, onTimeout: l.OnMessageTimeout}
	m.arm(m.read, ErrGRPCReadTimeout)
	// gRPC cancels the call's context when the call ends, once its status
	// is written: then no bound is needed any more.
	context.AfterFunc(ctx, m.end)
	return context.WithValue(ctx, msgDeadlineKey{}, m), nil
}

// unaryDeadlines runs after gRPC received a unary call's request message:
// the read bound is met.
func unaryDeadlines(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if m, _ := ctx.Value(msgDeadlineKey{}).(*msgDeadline); m != nil {
		m.disarm()
	}
	return handler(ctx, req)
}

// streamDeadlines bounds each RecvMsg of a streaming call by the read
// bound, the first included (a stream's handler reads it).
func streamDeadlines(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	m, _ := ss.Context().Value(msgDeadlineKey{}).(*msgDeadline)
	if m == nil {
		return handler(srv, ss)
	}
	m.disarm()
	return handler(srv, &deadlineStream{ServerStream: ss, m: m})
}

type deadlineStream struct {
	grpc.ServerStream
	m *msgDeadline
}

func (s *deadlineStream) RecvMsg(msg any) error {
	s.m.arm(s.m.read, ErrGRPCReadTimeout)
	defer s.m.disarm()
	return s.ServerStream.RecvMsg(msg)
}
