package gateway

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/traffic"
	"github.com/valyala/fasthttp"
)

// Shadow traffic (serving.Spec.Shadow): the gateway mirrors a share of the
// requests its deployment's primary route serves to the deployment's
// shadow track (routing.Shadow), compares the shadow's outputs with the
// primary's, tensor by tensor, and counts the outcome in the shadow's
// Tally.
//
//   - The client always gets the primary's answer and never waits for the
//     shadow: a request is mirrored after the primary answered it (200),
//     from copies of its body and of the primary's answer, in a goroutine
//     of its own.
//   - Only requests the primary route serves are mirrored (a request
//     pinned to another track, or sent there by a split, is not: its
//     route has no Shadow), with probability Percent/100, while the shadow
//     is Active. A request that found its primary cold (no ready replica)
//     is not mirrored either: its latency would be the primary's cold
//     start, not its answer.
//   - Mirrors in flight are bounded by MaxConcurrency, counted in
//     InFlight; a mirror copy beyond it is dropped and Tally.Drop counts
//     it. So is one whose request or answer is over maxMirrorBytes: the
//     memory mirrors hold is bounded by MaxConcurrency × 2 × maxMirrorBytes.
//     With Requests set, no more mirrors start than it leaves to judge.
//   - A mirror waits for a replica of the shadow track through the
//     activator like any request (it wakes a cold shadow, and counts as
//     demand on the track's Stats), for at most the hold timeout, picks one
//     by power-of-two-choices and sends it the same body, Content-Type and
//     Inference-Header-Content-Length, to /v2/models/{deployment}/infer
//     (no version: the shadow serves its own), retrying on another routed
//     replica when one fails before answering. Its latency runs from the
//     first pick to the answer, as the primary's does.
//     Both answers are decoded (JSON or binary tensor data) and compared
//     within the Tolerance. A shadow that answers an error status, does
//     not answer within mirrorTimeout, or answers what is not an infer
//     response, counts as a shadow error; a shadow track not routed (yet,
//     or any more) is not judged.
//   - Noise floor: when the primary route has two or more ready replicas
//     of the version that answered, the same request also goes to another
//     of them, in the same mirror slot, and Tally.Noise counts how the two
//     primary answers compared. It is load on the primary and counts as
//     demand on its Stats.
//   - Close cancels the mirrors in flight and waits for them; a replica's
//     answer that was awaited ends within its deadline (mirrorTimeout) in
//     the HTTP client, and is thrown away.
//   - gRPC ModelInfer calls are mirrored alike (grpc_shadow.go), over gRPC
//     to the replicas' gRPC servers, with the same slots, bounds and
//     tally: a mirror's wire (mirrorWire) is all that differs.

// maxMirrorBytes bounds the request body, and the primary's answer, that
// a mirror copies; a request with a larger one is not mirrored, and counts
// as dropped.
const maxMirrorBytes = 1 << 20

// mirrorTimeout bounds a mirror: the wait for a shadow replica (the hold
// timeout, as a request's) and its answer (as long again).
func (g *Gateway) mirrorTimeout() time.Duration { return 2 * g.opts.HoldTimeout }

// mirrors tracks the goroutines of a Gateway's mirrors, so that Close ends
// them. Its zero value is ready to use.
type mirrors struct {
	mu     sync.Mutex
	closed bool
	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// begin registers a mirror about to start and returns the context it runs
// in; false after close.
func (m *mirrors) begin() (context.Context, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, false
	}
	if m.ctx == nil {
		m.ctx, m.cancel = context.WithCancel(context.Background())
	}
	m.wg.Add(1)
	return m.ctx, true
}

// close cancels the mirrors in flight, waits for them to end, and keeps new
// ones from starting.
func (m *mirrors) close() {
	m.mu.Lock()
	m.closed = true
	if m.cancel != nil {
		m.cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// mirror is one mirrored request, sent over its wire.
type mirror struct {
	sh       *routing.Shadow
	primary  *routing.Route    // the primary route that served it
	answered *balance.Endpoint // the primary replica that answered
	name     string            // the deployment, the model name replicas serve
	latency  time.Duration     // the primary's, from its first pick to its answer
	wire     mirrorWire
}

// mirrorWire is how a mirror's request reaches replicas and how their
// answers read: REST (restMirror) or gRPC (grpcMirror, grpc_shadow.go).
type mirrorWire interface {
	// primaryOutputs decodes the primary's answer.
	primaryOutputs() ([]oip.Tensor, error)
	// send sends the request to ep, a replica of rt: as the shadow's when
	// shadow is set (asking no version: the shadow serves its own), else
	// as the primary was asked (the noise floor). It returns when ctx
	// ends, even while the replica has not answered.
	send(ctx context.Context, rt *routing.Route, ep *balance.Endpoint, shadow bool) mirrorReply
	// samples returns the request, the primary's answer (its outputs
	// primary) and r's, as a kept disagreement shows them.
	samples(primary []oip.Tensor, r mirrorReply) (input, primaryOut, shadowOut []byte)
}

// mirrorReply is a replica's answer to a mirror.
type mirrorReply struct {
	outputs []oip.Tensor // the answer's, when it is an infer response
	body    []byte       // the answer's bytes, on a wire that has them
	// err says that the replica did not answer (another may be tried);
	// failed that its answer is an error, or not an infer response. Each
	// names the replica.
	err, failed error
}

// restMirror is a REST mirror's wire: copies of what it needs from the
// primary's exchange, which is released when the request returns.
type restMirror struct {
	g           *Gateway
	name        string // the deployment
	path        string // the primary request's path
	contentType string
	inferLen    string // the request's Inference-Header-Content-Length
	input       []byte
	output      []byte // the primary's answer
	outputLen   int    // its JSON part's length
}

// forwardMirrored forwards ctx's request as forwardTo does, to rt, the
// deployment's primary route, which has a Shadow; when the request is
// drawn for mirroring and the primary answers 200, it starts a mirror of
// it that the client does not wait for.
func (g *Gateway) forwardMirrored(ctx *fasthttp.RequestCtx, x *exchange, rt *routing.Route, name, version string) int {
	sh := rt.Shadow
	if !g.drawMirror(rt, sh) {
		return g.forwardTo(ctx, x, rt, name, version, modeInfer, ctx.Path())
	}
	mark := g.opts.Clock.Now() // the first pick follows at once: rt has ready replicas
	code := g.forwardTo(ctx, x, rt, name, version, modeInfer, ctx.Path())
	if code != http.StatusOK { // a 200 is a replica's: x.tried holds it
		return code
	}
	end := g.opts.Clock.Now()
	if !x.picked.IsZero() {
		mark = x.picked
	}
	g.startMirror(ctx, x, rt, end.Sub(mark))
	return code
}

// drawMirror reports whether a request that rt, with Shadow sh, is about to
// serve is mirrored.
func (g *Gateway) drawMirror(rt *routing.Route, sh *routing.Shadow) bool {
	if sh.Percent < 100 && rand.Int32N(100) >= sh.Percent {
		return false
	}
	if len(rt.Endpoints) == 0 || !sh.Active(g.opts.Clock.Now()) {
		return false
	}
	if g.routes.Lookup(sh.Key) == nil {
		// The control loop publishes the shadow's track with the
		// primary's route, or removes it: nothing to judge, and a mirror
		// started for it would only take a slot (and be counted dropped
		// when the slots are full).
		return false
	}
	// Start no more mirrors than are left to judge.
	return sh.Requests <= 0 || sh.Tally.Judged()+int64(sh.InFlight.Load()) < sh.Requests
}

// startMirror mirrors x's request, which rt served (200) in latency, unless
// the shadow's mirrors are at MaxConcurrency or a body is too large to
// copy: those are dropped, and counted.
func (g *Gateway) startMirror(ctx *fasthttp.RequestCtx, x *exchange, rt *routing.Route, latency time.Duration) {
	out := ctx.Response.Body()
	base, ok := g.admitMirror(rt.Shadow, len(x.body) <= maxMirrorBytes && len(out) <= maxMirrorBytes)
	if !ok {
		return
	}
	w := &restMirror{
		g: g, name: rt.Deployment,
		path:        string(ctx.Path()),
		contentType: string(ctx.Request.Header.ContentType()),
		inferLen:    string(ctx.Request.Header.Peek(oip.HeaderInferenceHeaderLength)),
		input:       bytes.Clone(x.body),
		output:      bytes.Clone(out),
	}
	w.outputLen = jsonLength(ctx.Response.Header.Peek(oip.HeaderInferenceHeaderLength), len(w.output))
	m := &mirror{sh: rt.Shadow, primary: rt, answered: x.tried[len(x.tried)-1], name: rt.Deployment, latency: latency, wire: w}
	go g.runMirror(base, m)
}

// admitMirror takes a mirror slot of sh for a request drawn for mirroring,
// which fits (its messages are within maxMirrorBytes), and registers the
// mirror about to start, returning the context it runs in; false when it
// is not to start: dropped and counted (it does not fit, or sh's mirrors
// are at MaxConcurrency), or not needed (as many are judged or in flight
// as sh asks for), or the gateway is closing. The caller starts runMirror
// after true.
func (g *Gateway) admitMirror(sh *routing.Shadow, fits bool) (context.Context, bool) {
	if !fits || !acquireSlot(sh) {
		sh.Tally.Drop()
		return nil, false
	}
	if sh.Requests > 0 && sh.Tally.Judged()+int64(sh.InFlight.Load()) > sh.Requests {
		sh.InFlight.Add(-1) // as many are judged or in flight as the shadow asks for
		return nil, false
	}
	base, ok := g.mirrors.begin()
	if !ok { // the gateway is closing
		sh.InFlight.Add(-1)
		return nil, false
	}
	return base, true
}

// acquireSlot takes one of sh's MaxConcurrency mirror slots without
// waiting; false when all are taken.
func acquireSlot(sh *routing.Shadow) bool {
	for {
		n := sh.InFlight.Load()
		if n >= sh.MaxConcurrency {
			return false
		}
		if sh.InFlight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// jsonLength returns the JSON part's length an Inference-Header-Content-
// Length header value gives, or n (the whole body) when there is none.
func jsonLength(header []byte, n int) int {
	if len(header) == 0 {
		return n
	}
	v, err := strconv.Atoi(string(header))
	if err != nil {
		return -1 // ParseResponse refuses it
	}
	return v
}

// runMirror runs m, in its slot, until its shadow and noise comparisons are
// counted, mirrorTimeout passes, or the gateway closes.
func (g *Gateway) runMirror(base context.Context, m *mirror) {
	defer g.mirrors.wg.Done()
	defer m.sh.InFlight.Add(-1)
	ctx, cancel := context.WithTimeout(base, g.mirrorTimeout())
	defer cancel()
	primary, err := m.wire.primaryOutputs()
	if err != nil {
		// Nothing to compare the shadow with; not the shadow's doing.
		g.opts.Logger.Debug("shadow: the primary's answer is not an infer response; not mirrored", "deployment", m.name, "err", err)
		return
	}
	var noise sync.WaitGroup
	if other := g.noiseReplica(m); other != nil {
		noise.Go(func() { g.measureNoise(ctx, m, other, primary) })
	}
	g.compareShadow(ctx, base, m, primary)
	noise.Wait()
}

// compareShadow sends m to a replica of the shadow track and counts the
// comparison of its answer with primary, or its failure.
func (g *Gateway) compareShadow(ctx, base context.Context, m *mirror, primary []oip.Tensor) {
	sh := m.sh
	fail := func(err error) {
		if base.Err() == nil { // a gateway closing judges nothing
			sh.Tally.ShadowError(err)
		}
	}
	if rt := g.routes.Lookup(sh.Key); rt != nil && rt.Stats != nil {
		// Demand on the shadow track, as a request's (Gateway.infer).
		rt.Stats.Begin(g.opts.Clock.Now())
		defer func() { rt.Stats.End(g.opts.Clock.Now()) }()
	}
	var tried []*balance.Endpoint
	var picked time.Time
	var lastErr error
	want := serving.OIPVersion(sh.Model) // "" for an alias or a path: any replica of the track
	for len(tried) < g.opts.Attempts {
		rt, err := g.holder.WaitTenant(ctx, sh.Key, "")
		if errors.Is(err, activator.ErrNotFound) {
			// The control loop publishes the shadow's track with the
			// primary's route, or removes it: nothing to judge.
			g.opts.Logger.Debug("shadow: the shadow's track is not routed; not mirrored", "deployment", m.name, "track", sh.Key)
			return
		}
		if err != nil {
			if lastErr != nil {
				err = fmt.Errorf("%w; before: %w", err, lastErr)
			}
			fail(fmt.Errorf("shadow %q: no replica answered: %w", sh.Key, err))
			return
		}
		ep := g.balancer.Pick(rt.Endpoints, func(e *balance.Endpoint) bool {
			return slices.Contains(tried, e) || (want != "" && e.Version != want)
		})
		if ep == nil && want != "" && len(tried) == 0 {
			// The shadow's replicas still serve the shadow before this
			// one (a new shadow of another version rolls them): wait for
			// one of this version rather than judge the old one.
			if err := awaitChange(ctx, rt, g.opts.HoldTimeout); err != nil {
				fail(fmt.Errorf("shadow %q: no replica serves version %s yet: %w", sh.Key, want, err))
				return
			}
			continue
		}
		if ep == nil {
			break // every routed replica failed: no waiting for others, a mirror holds a slot
		}
		if picked.IsZero() {
			picked = g.opts.Clock.Now()
		}
		tried = append(tried, ep)
		r := m.wire.send(ctx, rt, ep, true)
		if r.err != nil {
			lastErr = r.err
			if ctx.Err() != nil {
				fail(fmt.Errorf("shadow %q: %w", sh.Key, lastErr))
				return
			}
			continue
		}
		latency := g.opts.Clock.Since(picked)
		if r.failed != nil {
			fail(fmt.Errorf("shadow %w", r.failed))
			return
		}
		p := traffic.Pair{
			Result:         traffic.Compare(primary, r.outputs, sh.Tolerance),
			PrimaryLatency: m.latency, ShadowLatency: latency,
		}
		if !p.Result.Agree { // a sample may keep them
			p.Input, p.PrimaryOutput, p.ShadowOutput = m.wire.samples(primary, r)
		}
		sh.Tally.Add(p)
		return
	}
	fail(fmt.Errorf("shadow %q: %d replicas failed to answer, last: %w", sh.Key, len(tried), lastErr))
}

// noiseReplica picks a primary replica other than the one that answered
// m, of the same version, for the noise floor; nil when there is none.
func (g *Gateway) noiseReplica(m *mirror) *balance.Endpoint {
	if len(m.primary.Endpoints) < 2 {
		return nil
	}
	return g.balancer.Pick(m.primary.Endpoints, func(e *balance.Endpoint) bool {
		return e == m.answered || e.Version != m.answered.Version
	})
}

// measureNoise sends m's request to ep, another primary replica, and
// counts how its answer compares with primary's in Tally.Noise. A failure
// counts nothing: the noise floor is the primary's disagreement with
// itself, not its errors.
func (g *Gateway) measureNoise(ctx context.Context, m *mirror, ep *balance.Endpoint, primary []oip.Tensor) {
	rt := m.primary
	if rt.Stats != nil {
		rt.Stats.Begin(g.opts.Clock.Now())
		defer func() { rt.Stats.End(g.opts.Clock.Now()) }()
	}
	r := m.wire.send(ctx, rt, ep, false)
	if err := cmp.Or(r.err, r.failed); err != nil {
		g.opts.Logger.Debug("shadow: noise request failed", "deployment", m.name, "err", err)
		return
	}
	m.sh.Tally.Noise(traffic.Compare(primary, r.outputs, m.sh.Tolerance))
}

func (w *restMirror) primaryOutputs() ([]oip.Tensor, error) {
	r, err := oip.ParseResponse(w.output, w.outputLen)
	return r.Outputs, err
}

func (w *restMirror) send(ctx context.Context, rt *routing.Route, ep *balance.Endpoint, shadow bool) mirrorReply {
	path := w.path
	if shadow {
		path = "/v2/models/" + w.name + "/infer"
	}
	a := w.g.sendMirror(ctx, rt, ep, path, w)
	switch {
	case a.err != nil:
		return mirrorReply{err: fmt.Errorf("replica %s: %w", ep.ID, a.err)}
	case a.status/100 != 2:
		return mirrorReply{failed: fmt.Errorf("replica %s answered %d: %s", ep.ID, a.status, clip(string(a.body)))}
	}
	resp, err := oip.ParseResponse(a.body, a.jsonLen)
	if err != nil {
		return mirrorReply{failed: fmt.Errorf("replica %s: %w", ep.ID, err)}
	}
	return mirrorReply{outputs: resp.Outputs, body: a.body}
}

func (w *restMirror) samples(_ []oip.Tensor, r mirrorReply) (input, primaryOut, shadowOut []byte) {
	return w.input, w.output, r.body
}

// mirrorAnswer is a replica's answer to a mirror.
type mirrorAnswer struct {
	status  int
	body    []byte // a copy
	jsonLen int
	err     error
}

// sendMirror sends m's request to ep, a replica of rt, at path, with the
// replica's upstream client, and returns its answer. It returns when ctx
// ends even while the client still waits; the client gives up at ctx's
// deadline.
func (g *Gateway) sendMirror(ctx context.Context, rt *routing.Route, ep *balance.Endpoint, path string, m *restMirror) mirrorAnswer {
	up, err := g.ups.get(rt, ep, false)
	if err != nil {
		return mirrorAnswer{err: err}
	}
	deadline, _ := ctx.Deadline() // runMirror's timeout
	req := fasthttp.AcquireRequest()
	req.Header.SetNoDefaultContentType(true)
	req.Header.SetMethod(http.MethodPost)
	if m.contentType != "" {
		req.Header.SetContentType(m.contentType)
	}
	if m.inferLen != "" {
		req.Header.SetCanonical(headerInferenceLength, s2b(m.inferLen))
	}
	if ep.Secret != "" {
		req.Header.SetCanonical(headerSecret, s2b(ep.Secret))
	}
	u := req.URI()
	u.SetScheme(up.scheme)
	u.SetHost(up.host)
	u.SetPath(path)
	req.SetBodyRaw(m.input) // read only, shared by the shadow and noise requests
	done := make(chan mirrorAnswer, 1)
	go func() {
		resp := fasthttp.AcquireResponse()
		resp.Header.SetNoDefaultContentType(true)
		ep.Acquire()
		err := up.hc.DoDeadline(req, resp, deadline)
		ep.Release()
		a := mirrorAnswer{err: err}
		if err == nil {
			a.status = resp.StatusCode()
			a.body = bytes.Clone(resp.Body())
			a.jsonLen = jsonLength(resp.Header.Peek(oip.HeaderInferenceHeaderLength), len(a.body))
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
		done <- a
	}()
	select {
	case a := <-done:
		return a
	case <-ctx.Done():
		err := context.Cause(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %v", g.mirrorTimeout())
		}
		return mirrorAnswer{err: err}
	}
}
