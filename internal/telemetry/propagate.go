package telemetry

import (
	"context"
	"encoding/hex"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
)

// W3C trace-context header names.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// ExtractFastHTTP returns ctx with the remote span context of h's W3C
// traceparent and tracestate headers, or ctx itself when h has no valid
// traceparent. It parses as the W3C Trace Context spec (level 1) and otel's
// propagation.TraceContext do, and does not allocate when h has no
// traceparent.
func ExtractFastHTTP(ctx context.Context, h *fasthttp.RequestHeader) context.Context {
	sc, ok := parseTraceparent(h.Peek(HeaderTraceparent))
	if !ok {
		return ctx
	}
	if ts := h.Peek(HeaderTracestate); len(ts) > 0 {
		// An invalid tracestate is dropped; the traceparent still counts.
		if state, err := trace.ParseTraceState(string(ts)); err == nil {
			sc = sc.WithTraceState(state)
		}
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// knownFlags are the trace flags W3C Trace Context defines (level 2):
// sampled and random. Others are dropped.
const knownFlags = trace.FlagsSampled | trace.FlagsRandom

// parseTraceparent parses "00-<32 hex trace id>-<16 hex span id>-<2 hex
// flags>". A later version may append "-..." fields, which are ignored,
// and set flag bits that version 00 reserves; version ff, upper-case hex
// and all-zero ids are invalid.
func parseTraceparent(v []byte) (trace.SpanContext, bool) {
	const n = 55
	if len(v) < n || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return trace.SpanContext{}, false
	}
	var ver [1]byte
	if !decodeLowerHex(ver[:], v[0:2]) || ver[0] == 0xff {
		return trace.SpanContext{}, false
	}
	// Version 00 has nothing after the flags; but a lone "-" after them
	// is taken, as otel's propagator takes it (its split cannot tell "01"
	// from "01-"), so that both read a header alike.
	if (ver[0] == 0 && len(v) != n && !(len(v) == n+1 && v[n] == '-')) || (len(v) > n && v[n] != '-') {
		return trace.SpanContext{}, false
	}
	var tid trace.TraceID
	var sid trace.SpanID
	var flags [1]byte
	if !decodeLowerHex(tid[:], v[3:35]) || !decodeLowerHex(sid[:], v[36:52]) || !decodeLowerHex(flags[:], v[53:55]) {
		return trace.SpanContext{}, false
	}
	if ver[0] == 0 && flags[0] > 3 {
		return trace.SpanContext{}, false // reserved flag bits in version 00
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    tid,
		SpanID:     sid,
		TraceFlags: trace.TraceFlags(flags[0]) & knownFlags,
		Remote:     true,
	})
	return sc, sc.IsValid()
}

// decodeLowerHex decodes src (2 per byte of dst), refusing upper case.
func decodeLowerHex(dst, src []byte) bool {
	for i := range dst {
		hi, ok1 := lowerHexVal(src[2*i])
		lo, ok2 := lowerHexVal(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func lowerHexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// InjectFastHTTP sets h's traceparent (and tracestate, when there is one)
// from the span context of ctx, replacing any the request had. Without a
// valid span context it does nothing; without a tracestate it does not
// allocate.
func InjectFastHTTP(ctx context.Context, h *fasthttp.RequestHeader) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	var buf [55]byte
	buf[0], buf[1], buf[2] = '0', '0', '-'
	tid, sid := sc.TraceID(), sc.SpanID()
	hex.Encode(buf[3:35], tid[:])
	buf[35] = '-'
	hex.Encode(buf[36:52], sid[:])
	buf[52] = '-'
	flags := [1]byte{byte(sc.TraceFlags() & knownFlags)}
	hex.Encode(buf[53:55], flags[:])
	h.SetBytesV(HeaderTraceparent, buf[:])
	if ts := sc.TraceState(); ts.Len() > 0 {
		h.Set(HeaderTracestate, ts.String())
	} else {
		h.Del(HeaderTracestate)
	}
}
