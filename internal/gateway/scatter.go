package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/oip"
	ebbreplica "github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/valyala/fasthttp"
)

// Scatter/gather (serving.Spec.Scatter): a REST infer request for a
// deployment with a segment size, whose inputs all share a batch dimension
// (shape[0]) of more rows than the segment size, is cut along that
// dimension into segments, which replicas serve in parallel, and their
// outputs are joined back in row order.
//
//   - Segments carry segmentRows rows each, the last one the rest (a
//     segment size need not divide the rows); a request that would need
//     more than maxSegments is cut into maxSegments larger ones.
//   - Each segment is an infer request of its own: the client's id
//     (suffixed ".0", ".1", ...), parameters and requested outputs, its
//     rows of every input, in the client's wire (JSON, or binary tensor
//     data when the client sent that), to the client's path and query,
//     with its Content-Type and X-Request-Id, and a trace context of its
//     own (scatter_trace.go).
//   - All segments are in flight at once. Each counts as one request of
//     demand on the deployment (its Stats), so the autoscaler scales out
//     for them; each waits in the activator while the deployment is cold
//     (waking it), and goes to the routed replica with the fewest requests
//     in flight, picks made one at a time so that the segments spread over
//     the replicas (spec.routing's affinity does not apply: a key would
//     send every segment to one replica). A segment whose replica does not
//     answer, or answers a 5xx, is tried on another replica, up to
//     Options.Attempts replicas; a 4xx answer (the client's fault) is
//     final.
//   - The first segment that fails for good cancels the others (those not
//     sent yet, and their holds) and the client gets one error, with the
//     status of the failure (a replica's, or the gateway's 503), that names
//     the segment, its rows, and why it failed, in code
//     "scatter/segment_failed".
//   - Outputs are joined by name: every segment must answer the same
//     outputs, each of one datatype and the same dimensions after the
//     first; their data is concatenated in segment order and shape[0] is
//     the sum. Segments that disagree get 502, naming the output. The
//     answer carries the first segment's model name, version and
//     parameters, the client's id, and its outputs as the client asked
//     for them (JSON or binary); Ebb-Replica lists the replicas that
//     answered, Ebb-Segments counts the segments.
//
// Anything else goes to one replica untouched, as if the deployment had no
// scatter: a request of at most segmentRows rows, one whose inputs do not
// all have the same first dimension (or have a scalar), one that does not
// parse or decode (the replica's answer says why), one with per-input
// parameters other than binary_data_size (a segment could not carry them),
// one for a version no replica serves (refused as usual), and one that
// finds the gateway's body budget without room for the copies a split
// holds (about twice the body). gRPC ModelInfer calls are never split. A
// deployment without scatter pays one nil check; one with it pays a
// comparison of the body's length with segmentRows for a request too small
// to have more rows, and a parse of the JSON for the rest. During a
// rollover the segments of one request may be served by replicas of
// different versions; the answer names the first segment's.

// codeSegmentFailed is the error code of a split request whose segment
// failed.
const codeSegmentFailed = "scatter/segment_failed"

// segmentsHeader counts the segments in a split request's answer, whose
// Ebb-Replica lists at most maxListedReplicas replicas.
const (
	segmentsHeader    = "Ebb-Segments"
	maxListedReplicas = 16
)

// scatter answers ctx's request, whose body x holds, by segments when rt's
// scatter applies to it (see above), and reports whether it did; false
// leaves the request untouched and nothing written, for the normal path.
// It ends the request's metrics (s), under tag as infer does, and its
// meter.
func (g *Gateway) scatter(ctx *fasthttp.RequestCtx, x *exchange, rt *routing.Route, version string, s *series, tag string, start time.Time) bool {
	segRows := int(rt.Scatter.SegmentRows)
	if segRows < 1 || len(x.body) <= segRows {
		return false // every row takes a byte of the body at least
	}
	if version != "" && rt.Version != version && !rt.Serves(version) {
		return false // forwardTo refuses it
	}
	r, ok := g.prepareScatter(ctx, x, rt, version, segRows)
	if !ok {
		return false
	}
	extra := int64(2 * len(x.body)) // the decoded inputs and the segments' bodies
	if !g.budget.reserve(extra, g.opts.MaxBufferedBytes) {
		return false
	}
	defer g.budget.release(extra)
	if err := r.decode(x.body); err != nil {
		return false // the replica says what is wrong with it
	}
	results := r.run(&x.ctx)
	code := r.answer(ctx, &x.ctx, results)
	end := g.now(start)
	if rt.Meter != nil {
		x.meter, x.picked = rt.Meter, r.picked // run's goroutines are done
		x.observe(end, code)
	}
	s.end(code, versionLabel(rt, results[r.n-1].replica, tag), end.Sub(start))
	return true
}

// scatterRun is one split request.
type scatterRun struct {
	g       *Gateway
	rt      *routing.Route // as infer looked it up
	name    string         // the deployment (a split's track)
	version string         // the version asked for; "" for any
	tenant  string         // whom the request counts against

	path, query, contentType, requestID string
	req                                 oip.InferRequest // the client's; Inputs as parsed
	jsonLen                             int              // of the body's JSON part
	binary                              bool             // the client sent binary tensor data
	inputs                              []oip.Tensor     // decoded

	rows, segRows, n int

	trace scatterTrace // scatter_trace.go

	mu     sync.Mutex // serializes picks (pick)
	next   int        // where the next pick starts its scan
	picked time.Time  // the first pick, for a meter
}

// prepareScatter parses x's request and returns its run when it is to be
// split: its inputs share a first dimension of more than segRows rows.
func (g *Gateway) prepareScatter(ctx *fasthttp.RequestCtx, x *exchange, rt *routing.Route, version string, segRows int) (*scatterRun, bool) {
	r := &scatterRun{g: g, rt: rt, name: rt.Deployment, version: version, tenant: x.tenant, jsonLen: len(x.body)}
	if n := x.hdr.inferenceLength; len(n) > 0 {
		l, err := strconv.Atoi(b2s(n))
		if err != nil || l < 0 || l > len(x.body) {
			return nil, false
		}
		r.jsonLen, r.binary = l, true
	}
	if oip.ParseRequest(x.body[:r.jsonLen], &r.req) != nil {
		return nil, false
	}
	r.rows = batchRows(r.req.Inputs)
	if r.rows <= segRows {
		return nil, false
	}
	r.segRows, r.n = planSegments(r.rows, segRows, rt.Scatter.MaxSegmentsOrDefault())
	if r.n < 2 {
		return nil, false // maxSegments 1: nothing to split
	}
	r.path, r.query = string(ctx.Path()), string(ctx.URI().QueryString())
	r.contentType = string(ctx.Request.Header.ContentType())
	r.requestID = string(x.hdr.requestID)
	r.traceFrom(ctx, x)         // scatter_trace.go
	r.next = rand.IntN(1 << 16) // ties among idle replicas start anywhere
	return r, true
}

// batchRows returns the first dimension every input shares, or -1 when
// they do not share one (or an input is a scalar, or carries parameters
// other than binary_data_size, which a segment would not carry).
func batchRows(inputs []oip.RequestInput) int {
	rows := -1
	for i, in := range inputs {
		if len(in.Shape) == 0 || in.Shape[0] < 0 || (i > 0 && in.Shape[0] != int64(rows)) {
			return -1
		}
		for k := range in.Parameters {
			if k != oip.ParamBinaryDataSize {
				return -1
			}
		}
		rows = int(in.Shape[0])
	}
	return rows
}

// planSegments returns the rows of each segment (the last may have fewer)
// and how many segments rows are cut into: segRows each, unless that makes
// more than maxSegments, when maxSegments take the rows evenly.
func planSegments(rows, segRows, maxSegments int) (size, n int) {
	n = (rows + segRows - 1) / segRows
	if n <= maxSegments {
		return segRows, n
	}
	size = (rows + maxSegments - 1) / maxSegments
	return size, (rows + size - 1) / size
}

// decode decodes the request's inputs from body.
func (r *scatterRun) decode(body []byte) error {
	bin, err := oip.BinaryInputs(&r.req, body[r.jsonLen:])
	if err != nil {
		return err
	}
	r.inputs = make([]oip.Tensor, len(r.req.Inputs))
	for i, in := range r.req.Inputs {
		if bin != nil && bin[i] != nil {
			r.inputs[i], err = oip.DecodeBinary(in, bin[i])
		} else {
			r.inputs[i], err = oip.Decode(in)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// rowsOf returns the rows of segment i: [lo, hi).
func (r *scatterRun) rowsOf(i int) (lo, hi int) {
	return i * r.segRows, min((i+1)*r.segRows, r.rows)
}

// body returns the body of segment i and the length of its JSON part.
func (r *scatterRun) body(i int) ([]byte, int, error) {
	lo, hi := r.rowsOf(i)
	seg := make([]oip.Tensor, len(r.inputs))
	for k, t := range r.inputs {
		seg[k] = sliceRows(t, lo, hi)
	}
	req := oip.InferRequest{Parameters: r.req.Parameters, Outputs: r.req.Outputs}
	if r.req.ID != "" {
		req.ID = r.req.ID + "." + strconv.Itoa(i)
	}
	return oip.RequestBody(req, seg, r.binary)
}

// sliceRows returns rows [lo, hi) of t, sharing its data.
func sliceRows(t oip.Tensor, lo, hi int) oip.Tensor {
	per := 1
	for _, d := range t.Shape[1:] {
		per *= int(d)
	}
	shape := slices.Clone(t.Shape)
	shape[0] = int64(hi - lo)
	data := reflect.ValueOf(t.Data).Slice(lo*per, hi*per).Interface()
	return oip.Tensor{Name: t.Name, Datatype: t.Datatype, Shape: shape, Data: data}
}

// segmentResult is how one segment ended.
type segmentResult struct {
	resp    oip.InferResponse // its answer, when it succeeded
	replica *balance.Endpoint // the replica that answered it last; nil for none
	// status is 0 for success, else the failure's HTTP status, which msg
	// explains; cancelled is set when it stopped because the request
	// did (another segment failed, or the client went away).
	status    int
	msg       string
	cancelled bool
}

// run sends every segment at once and returns how each ended. The first
// that fails for good cancels the others, and so does the client going
// away (client's Done).
func (r *scatterRun) run(client context.Context) []segmentResult {
	// Not a context derived from client: for a parent of its own kind,
	// context starts a goroutine that reads the parent's Done whenever it
	// runs, maybe after the exchange holding client went back to its pool.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gone, stop := client.Done(), make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-gone:
			cancel()
		case <-stop:
		}
	}()
	results := make([]segmentResult, r.n)
	var wg sync.WaitGroup
	for i := range r.n {
		wg.Go(func() {
			res := r.tracedSegment(ctx, i) // scatter_trace.go
			if res.status != 0 && !res.cancelled {
				cancel()
			}
			results[i] = res
		})
	}
	wg.Wait()
	return results
}

// segment sends segment i to a replica, holding it while the deployment
// is cold, and retrying it on another replica when one does not answer or
// answers a 5xx.
func (r *scatterRun) segment(ctx context.Context, i int) segmentResult {
	g := r.g
	body, jsonLen, err := r.body(i)
	if err != nil {
		return segmentResult{status: http.StatusInternalServerError, msg: "encoding it: " + err.Error()}
	}
	if st := r.rt.Stats; st != nil { // demand: one request per segment
		st.Begin(g.opts.Clock.Now())
		defer func() { st.End(g.opts.Clock.Now()) }()
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	r.build(req, body, jsonLen)
	var tried []*balance.Endpoint
	skip := func(e *balance.Endpoint) bool {
		return slices.Contains(tried, e) || (r.version != "" && e.Version != r.version)
	}
	last := segmentResult{status: http.StatusServiceUnavailable, msg: "no replica took it"}
	answered := false // last is a replica's answer (a 5xx)
	rt := r.rt
	for first := true; len(tried) < g.opts.Attempts; first = false {
		if ctx.Err() != nil {
			return segmentResult{cancelled: true, status: http.StatusServiceUnavailable, msg: "cancelled"}
		}
		if !first || len(rt.Endpoints) == 0 {
			if rt, err = g.holder.WaitTenant(ctx, r.name, r.tenant); err != nil {
				return r.holdFailed(ctx, err, last, answered)
			}
		}
		if r.version != "" && !rt.Serves(r.version) {
			// Replicas of the version are on their way (a rollout).
			if err := awaitChange(ctx, rt, g.opts.HoldTimeout); err != nil {
				return r.holdFailed(ctx, fmt.Errorf("no replica serves version %s yet", r.version), last, answered)
			}
			continue
		}
		ep := r.pick(rt, skip)
		if ep == nil {
			if answered {
				break // every routed replica answered it with an error
			}
			if err := awaitChange(ctx, rt, g.opts.HoldTimeout); err != nil {
				return r.holdFailed(ctx, fmt.Errorf("no replica could take it: %s", last.msg), last, answered)
			}
			continue
		}
		tried = append(tried, ep)
		status, err := r.send(ctx, rt, ep, req, resp)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return segmentResult{cancelled: true, status: http.StatusServiceUnavailable, msg: "cancelled"}
			}
			last, answered = segmentResult{replica: ep, status: http.StatusServiceUnavailable, msg: fmt.Sprintf("replica %s did not answer: %v", ep.ID, err)}, false
		case status == http.StatusOK:
			body := resp.Body()
			out, err := oip.ParseResponse(body, jsonLength(resp.Header.Peek(oip.HeaderInferenceHeaderLength), len(body)))
			if err != nil {
				return segmentResult{replica: ep, status: http.StatusBadGateway, msg: fmt.Sprintf("replica %s: %v", ep.ID, err)}
			}
			return segmentResult{replica: ep, resp: out}
		default:
			last = segmentResult{replica: ep, status: status, msg: fmt.Sprintf("replica %s answered %d: %s", ep.ID, status, clip(errorText(resp.Body())))}
			if status < http.StatusInternalServerError {
				return last // the client's fault: any replica would say so
			}
			answered = true
		}
		g.opts.Logger.Debug("segment failed; retrying on another replica", "deployment", r.name, "segment", i, "err", last.msg)
		g.opts.Metrics.retried(r.name)
	}
	if len(tried) > 1 {
		last.msg = fmt.Sprintf("%d replicas failed, last: %s", len(tried), last.msg)
	}
	return last
}

// holdFailed is the end of a segment whose hold for a replica failed with
// err, after last (answered: a replica's answer) if it was tried before.
func (r *scatterRun) holdFailed(ctx context.Context, err error, last segmentResult, answered bool) segmentResult {
	switch {
	case ctx.Err() != nil:
		return segmentResult{cancelled: true, status: http.StatusServiceUnavailable, msg: "cancelled"}
	case answered:
		return last
	}
	msg := fmt.Sprintf("deployment %q: %v", r.name, err)
	if last.replica != nil {
		msg += "; before: " + last.msg
	}
	return segmentResult{status: holdStatus(err), msg: msg}
}

// build sets up req, segment body (JSON part jsonLen bytes long) for any
// replica: send sets where it goes.
func (r *scatterRun) build(req *fasthttp.Request, body []byte, jsonLen int) {
	req.Header.SetNoDefaultContentType(true)
	req.Header.SetMethod(http.MethodPost)
	if r.contentType != "" {
		req.Header.SetContentType(r.contentType)
	}
	if r.requestID != "" {
		req.Header.SetCanonical(headerRequestID, s2b(r.requestID))
	}
	if r.binary {
		req.Header.SetCanonical(headerInferenceLength, strconv.AppendInt(nil, int64(jsonLen), 10))
	}
	u := req.URI()
	u.SetPath(r.path)
	u.SetQueryString(r.query)
	r.traceHeaders(req) // scatter_trace.go
	req.SetBodyRaw(body)
}

// pick returns the replica of rt, not skipped, with the fewest requests in
// flight, and counts the segment on it (send releases it). Picks are made
// one at a time and ties go round, so the segments of a request spread
// over idle replicas one each.
func (r *scatterRun) pick(rt *routing.Route, skip func(*balance.Endpoint) bool) *balance.Endpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	eps := rt.Endpoints
	var best *balance.Endpoint
	for k := range len(eps) {
		e := eps[(r.next+k)%len(eps)]
		if !skip(e) && (best == nil || e.InFlight() < best.InFlight()) {
			best = e
		}
	}
	if best == nil {
		return nil
	}
	r.next++
	best.Acquire()
	if r.picked.IsZero() {
		r.picked = r.g.opts.Clock.Now()
	}
	return best
}

// send sends req to ep, a replica of rt that pick counted the request on,
// and returns the status of its answer, which resp holds.
func (r *scatterRun) send(ctx context.Context, rt *routing.Route, ep *balance.Endpoint, req *fasthttp.Request, resp *fasthttp.Response) (int, error) {
	defer ep.Release()
	up, err := r.g.ups.get(rt, ep, false)
	if err != nil {
		return 0, err
	}
	u := req.URI()
	u.SetScheme(up.scheme)
	u.SetHost(up.host)
	req.Header.Del(ebbreplica.SecretHeader)
	if ep.Secret != "" {
		req.Header.SetCanonical(headerSecret, s2b(ep.Secret))
	}
	resp.Reset()
	resp.Header.SetNoDefaultContentType(true)
	proxy := r.traceProxy(ctx, ep, req) // scatter_trace.go; nil unless sampled
	err = up.hc.Do(req, resp)
	if proxy != nil {
		endProxy(proxy, resp.StatusCode(), err)
	}
	return resp.StatusCode(), err
}

// errorText returns the message of an OIP error body, or the body itself.
func errorText(body []byte) string {
	var e oip.ErrorResponse
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(body))
}

// answer writes the answer of the split request: its joined outputs, or
// the error of the first segment that failed. client is the request's own
// context. It returns the status.
func (r *scatterRun) answer(ctx *fasthttp.RequestCtx, client context.Context, results []segmentResult) int {
	failed, more := -1, 0
	for i, res := range results {
		switch {
		case res.status == 0 || res.cancelled:
		case failed < 0:
			failed = i
		default:
			more++
		}
	}
	switch {
	case failed >= 0:
		res := results[failed]
		lo, hi := r.rowsOf(failed)
		msg := fmt.Sprintf("segment %d of %d (counting from 0: rows %d to %d of the request's %d) failed: %s",
			failed, r.n, lo, hi-1, r.rows, res.msg)
		if more > 0 {
			msg += fmt.Sprintf(" (and %d more segment(s) failed)", more)
		}
		if res.status == http.StatusServiceUnavailable {
			ctx.Response.Header.Set("Retry-After", "1")
		}
		return writeErrorCode(ctx, res.status, codeSegmentFailed, msg)
	case client.Err() != nil || slices.ContainsFunc(results, func(res segmentResult) bool { return res.cancelled }):
		return writeError(ctx, http.StatusServiceUnavailable, "request cancelled by the client")
	}
	outputs, err := joinOutputs(results)
	if err != nil {
		return writeErrorCode(ctx, http.StatusBadGateway, codeSegmentFailed, fmt.Sprintf("the %d segments' outputs cannot be joined: %v", r.n, err))
	}
	first := results[0].resp
	resp := oip.InferResponse{ModelName: first.ModelName, ModelVersion: first.ModelVersion, ID: r.req.ID, Parameters: first.Parameters, Outputs: outputs}
	names := make([]string, len(outputs))
	for i, t := range outputs {
		names[i] = t.Name
	}
	binary, _ := oip.BinaryOutputs(&r.req, names) // the replicas checked it
	body, jsonLen, err := oip.AppendResponse(nil, &resp, binary)
	if err != nil {
		return writeError(ctx, http.StatusInternalServerError, "encoding the joined outputs: "+err.Error())
	}
	ctx.SetStatusCode(http.StatusOK)
	if jsonLen < len(body) {
		ctx.Response.Header.SetContentType("application/octet-stream")
		ctx.Response.Header.Set(oip.HeaderInferenceHeaderLength, strconv.Itoa(jsonLen))
	} else {
		ctx.Response.Header.SetContentType("application/json")
	}
	ctx.Response.Header.SetCanonical(headerReplica, []byte(replicaList(results)))
	ctx.Response.Header.Set(segmentsHeader, strconv.Itoa(r.n))
	ctx.Response.SetBodyRaw(body)
	return http.StatusOK
}

// holdStatus is the status of a segment whose hold for a replica failed
// with err, as holdError answers a request's.
func holdStatus(err error) int {
	if errors.Is(err, activator.ErrNotFound) {
		return http.StatusNotFound
	}
	return http.StatusServiceUnavailable
}
