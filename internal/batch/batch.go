// Package batch groups concurrent inference requests into one model call:
// dynamic batching with Triton's semantics.
//
// Every request carries tensors whose dimension 0 is the batch (n ≥ 1 rows).
// Requests wait in a queue; a batch is sent to the model as soon as it holds
// MaxBatchSize rows or one of PreferredBatchSizes, otherwise once its oldest
// request has waited MaxQueueDelay. Only requests whose inputs agree on
// names, datatypes and every dimension after the first, and that ask for the
// same outputs, share a batch; a request larger than MaxBatchSize runs
// alone. The model's outputs are split back along dimension 0, each request
// getting its own rows.
//
// A Batcher holds goroutines only while it has work: a dispatcher runs while
// requests are queued and one goroutine runs each batch in the model. When
// the last request leaves, by answer or by cancellation, they exit; nothing
// needs starting or stopping.
package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving/core"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Predictor runs a model on a batch. outputs names the outputs the batch's
// requests asked for (all of them when empty), so that the model may
// compute only those; it may return more, which the batcher drops. Predict
// must be safe for concurrent use when Options.Instances is more than 1.
type Predictor interface {
	Predict(ctx context.Context, inputs []oip.Tensor, outputs []string) ([]oip.Tensor, error)
}

// PredictFunc adapts a function to Predictor.
type PredictFunc func(ctx context.Context, inputs []oip.Tensor, outputs []string) ([]oip.Tensor, error)

// Predict calls f.
func (f PredictFunc) Predict(ctx context.Context, inputs []oip.Tensor, outputs []string) ([]oip.Tensor, error) {
	return f(ctx, inputs, outputs)
}

// Clock is the batcher's time source. k8s.io/utils/clock.RealClock and the
// fake clock of k8s.io/utils/clock/testing satisfy it.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) clock.Timer
}

// Options tunes a Batcher. The zero value is usable.
type Options struct {
	// Clock defaults to the real clock.
	Clock Clock
	// Instances is how many batches may run in the model at once (Triton's
	// instance count); defaults to 1. While every instance is busy,
	// requests keep queueing and later batches grow.
	Instances int
	// Tracer, when set, records a telemetry.SpanBatchWait and a
	// telemetry.SpanEngineCall for each request whose context carries a
	// sampled span (trace.go), with SpanAttrs on the engine call; nil: no
	// tracing, and no cost.
	Tracer    trace.Tracer
	SpanAttrs []attribute.KeyValue
}

// Batcher queues requests and sends them to its Predictor in batches. It is
// safe for concurrent use.
type Batcher struct {
	model     Predictor
	clock     Clock
	max       int
	preferred []bool // preferred[n]: n rows is a preferred batch size
	delay     time.Duration
	instances int
	tracer    trace.Tracer // nil: no tracing
	spanAttrs []attribute.KeyValue

	// wake tells the dispatcher to look at the queue again: a request came
	// or left, or a batch finished.
	wake chan struct{}

	mu sync.Mutex
	// groups holds the queued requests by compatibility key, each in
	// arrival order.
	groups map[string]*group
	// queued counts the requests in groups.
	queued int
	// busy counts the batches running in the model.
	busy int
	// dispatching is true while a dispatcher goroutine runs; one runs
	// whenever queued > 0.
	dispatching bool
}

// group is the queue of requests that may share a batch.
type group struct {
	key  string
	reqs []*request
}

type request struct {
	ctx      context.Context
	inputs   []oip.Tensor
	outputs  []string
	rows     int
	enqueued time.Time
	done     chan result // buffered: the batch never blocks on a caller

	// Guarded by Batcher.mu.
	group *group // nil once taken into a batch or removed

	// With tracing (trace.go), set when the request is taken into a
	// batch: when, why and the batch's rows.
	taken     time.Time
	trigger   string
	batchRows int
}

type result struct {
	out []oip.Tensor
	err error
}

// New returns a Batcher that sends batches to model under policy, which
// must have MaxBatchSize ≥ 1, preferred sizes within 1..MaxBatchSize and a
// MaxQueueDelay ≥ 0 (serving.Deployment validation ensures this).
func New(model Predictor, policy core.Batching, opts Options) (*Batcher, error) {
	if policy.MaxBatchSize < 1 {
		return nil, fmt.Errorf("batching: maxBatchSize must be at least 1, got %d", policy.MaxBatchSize)
	}
	if policy.MaxQueueDelay.Duration < 0 {
		return nil, fmt.Errorf("batching: maxQueueDelay must not be negative, got %s", policy.MaxQueueDelay)
	}
	preferred := make([]bool, policy.MaxBatchSize+1)
	for _, p := range policy.PreferredBatchSizes {
		if p < 1 || p > policy.MaxBatchSize {
			return nil, fmt.Errorf("batching: preferred batch size %d is outside 1..maxBatchSize (%d)", p, policy.MaxBatchSize)
		}
		preferred[p] = true
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Instances < 1 {
		opts.Instances = 1
	}
	return &Batcher{
		model:     model,
		clock:     opts.Clock,
		max:       policy.MaxBatchSize,
		preferred: preferred,
		delay:     policy.MaxQueueDelay.Duration,
		instances: opts.Instances,
		tracer:    opts.Tracer,
		spanAttrs: opts.SpanAttrs,
		wake:      make(chan struct{}, 1),
		groups:    make(map[string]*group),
	}, nil
}

// Queued returns how many requests wait for a batch.
func (b *Batcher) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.queued
}

// Predict queues one request and returns its share of the batch's outputs:
// those named in outputs, in the model's order, or all of them when outputs
// is empty. Every input must have dimension 0 ≥ 1, the same in all inputs,
// and Data of as many elements as its Shape describes; otherwise Predict
// returns an *engine.InputError at once.
//
// When ctx ends while the request is queued, the request leaves the queue at
// once, never reaches the model, and Predict returns ctx.Err(). When ctx ends
// while its batch runs, Predict returns ctx.Err() at once; the model call
// is cancelled only when every request in the batch has gone.
//
// An *engine.InputError from a batch of several requests is not blamed on
// all of them: each request is then run alone, so only the one at fault gets
// the error. The returned tensors may share memory with other requests'
// outputs and must be treated as read-only.
func (b *Batcher) Predict(ctx context.Context, inputs []oip.Tensor, outputs []string) ([]oip.Tensor, error) {
	rows, err := batchRows(inputs)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &request{ctx: ctx, inputs: inputs, outputs: outputs, rows: rows, done: make(chan result, 1)}
	key := batchKey(inputs, outputs)

	b.mu.Lock()
	r.enqueued = b.clock.Now()
	g := b.groups[key]
	if g == nil {
		g = &group{key: key}
		b.groups[key] = g
	}
	g.reqs = append(g.reqs, r)
	r.group = g
	b.queued++
	start := !b.dispatching
	b.dispatching = true
	b.mu.Unlock()
	if start {
		go b.dispatch()
	} else {
		b.signal()
	}

	select {
	case res := <-r.done:
		return res.out, res.err
	case <-ctx.Done():
	}
	b.mu.Lock()
	queued := r.group != nil
	if queued {
		b.removeLocked(r)
	}
	b.mu.Unlock()
	if queued {
		b.signal()
		return nil, ctx.Err()
	}
	// Taken into a batch: the answer may already be there.
	select {
	case res := <-r.done:
		return res.out, res.err
	default:
		return nil, ctx.Err()
	}
}

// signal wakes the dispatcher without blocking.
func (b *Batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// removeLocked takes a queued request out of its group.
func (b *Batcher) removeLocked(r *request) {
	g := r.group
	if i := slices.Index(g.reqs, r); i >= 0 {
		g.reqs = slices.Delete(g.reqs, i, i+1)
	}
	if len(g.reqs) == 0 {
		delete(b.groups, g.key)
	}
	r.group = nil
	b.queued--
}

// dispatch sends batches to the model as they become ready and exits once
// the queue is empty.
func (b *Batcher) dispatch() {
	var timer clock.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		b.mu.Lock()
		var ready [][]*request
		var wait time.Duration
		now := b.clock.Now()
		for b.busy < b.instances {
			batch, w := b.nextLocked(now)
			if batch == nil {
				wait = w
				break
			}
			ready = append(ready, batch)
			b.busy++
		}
		if b.queued == 0 {
			b.dispatching = false
		}
		running := b.dispatching
		b.mu.Unlock()

		for _, batch := range ready {
			go b.execute(batch)
		}
		if !running {
			return
		}
		var timerC <-chan time.Time
		if wait > 0 {
			if timer == nil {
				timer = b.clock.NewTimer(wait)
			} else {
				if !timer.Stop() {
					// Drop a fire nobody read: a fake clock blocks
					// on a full channel.
					select {
					case <-timer.C():
					default:
					}
				}
				timer.Reset(wait)
			}
			timerC = timer.C()
		}
		select {
		case <-b.wake:
		case <-timerC:
		}
	}
}

// nextLocked takes the next batch to send out of the queue. When none is
// ready it returns nil and how long until the oldest queued request's delay
// runs out (0 when nothing waits on time).
func (b *Batcher) nextLocked(now time.Time) ([]*request, time.Duration) {
	var best *group
	var bestN int
	var wait time.Duration
	for _, g := range b.groups {
		n, w := b.ready(g, now)
		if n == 0 {
			if wait == 0 || w < wait {
				wait = w
			}
			continue
		}
		if best == nil || g.reqs[0].enqueued.Before(best.reqs[0].enqueued) {
			best, bestN = g, n
		}
	}
	if best == nil {
		return nil, wait
	}
	batch := make([]*request, bestN)
	copy(batch, best.reqs)
	if b.tracer != nil {
		b.markTaken(batch, best.reqs[bestN:], now) // trace.go
	}
	for _, r := range batch {
		r.group = nil
	}
	rest := copy(best.reqs, best.reqs[bestN:])
	clear(best.reqs[rest:])
	best.reqs = best.reqs[:rest]
	if rest == 0 {
		delete(b.groups, best.key)
	}
	b.queued -= bestN
	return batch, 0
}

// ready returns how many requests from the head of g to send now, or 0 and
// how long until g's oldest request has waited the queue delay. The rules
// are Triton's: send at once a batch that is full (MaxBatchSize rows, or the
// next request would not fit) or of a preferred size; else send the largest
// preferred-size prefix; else wait for the delay, then send what there is.
func (b *Batcher) ready(g *group, now time.Time) (int, time.Duration) {
	total, n, preferredN := 0, 0, 0
	for _, r := range g.reqs {
		if total+r.rows > b.max {
			if n == 0 {
				return 1, 0 // larger than MaxBatchSize: alone
			}
			return n, 0
		}
		total += r.rows
		n++
		if total == b.max {
			return n, 0
		}
		if b.preferred[total] {
			preferredN = n
		}
	}
	if preferredN == n {
		return n, 0
	}
	left := g.reqs[0].enqueued.Add(b.delay).Sub(now)
	if left <= 0 {
		return n, 0
	}
	if preferredN > 0 {
		return preferredN, 0
	}
	return 0, left
}

// execute runs one batch in the model and answers its requests.
func (b *Batcher) execute(batch []*request) {
	defer func() {
		b.mu.Lock()
		b.busy--
		b.mu.Unlock()
		b.signal()
	}()
	if b.tracer != nil {
		b.traceWait(batch) // trace.go
	}
	outs, err := b.run(batch)
	var ie *engine.InputError
	if len(batch) > 1 && errors.As(err, &ie) {
		// One request may have spoiled the batch: answer each alone.
		for _, r := range batch {
			if r.ctx.Err() != nil {
				r.done <- result{err: r.ctx.Err()}
				continue
			}
			out, err := b.run([]*request{r})
			r.done <- resultFor(out, err)
		}
		return
	}
	for i, r := range batch {
		if err != nil {
			r.done <- result{err: err}
			continue
		}
		r.done <- result{out: outs[i]}
	}
}

func resultFor(out [][]oip.Tensor, err error) result {
	if err != nil {
		return result{err: err}
	}
	return result{out: out[0]}
}

// run calls the model on batch and returns each request's outputs.
func (b *Batcher) run(batch []*request) ([][]oip.Tensor, error) {
	ctx, release := batchContext(batch)
	defer release()
	first := batch[0]
	if len(batch) == 1 {
		out, err := b.call(ctx, batch, first.inputs, first.outputs)
		if err != nil {
			return nil, err
		}
		return [][]oip.Tensor{selectOutputs(out, first.outputs)}, nil
	}

	inputs := make([]oip.Tensor, len(first.inputs))
	parts := make([]oip.Tensor, len(batch))
	rows := make([]int, len(batch))
	for i := range inputs {
		for j, r := range batch {
			parts[j] = r.inputs[i]
			rows[j] = r.rows
		}
		t, err := Concat(parts)
		if err != nil {
			return nil, err
		}
		inputs[i] = t
	}
	out, err := b.call(ctx, batch, inputs, first.outputs)
	if err != nil {
		return nil, err
	}
	out = selectOutputs(out, first.outputs)
	per := make([][]oip.Tensor, len(batch))
	for j := range per {
		per[j] = make([]oip.Tensor, len(out))
	}
	for k, t := range out {
		split, err := Split(t, rows)
		if err != nil {
			return nil, fmt.Errorf("the model's output does not follow the batch: %w", err)
		}
		for j, p := range split {
			per[j][k] = p
		}
	}
	return per, nil
}

// call runs the model, turning a panic into an error so one bad batch
// cannot take down the process.
func (b *Batcher) call(ctx context.Context, batch []*request, inputs []oip.Tensor, outputs []string) (out []oip.Tensor, err error) {
	if b.tracer != nil {
		defer b.traceCall(batch, b.clock.Now(), &err) // trace.go
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error in the model engine: %v", p)
		}
	}()
	return b.model.Predict(ctx, inputs, outputs)
}

// batchContext returns the context of a batch's model call: it carries the
// first request's values and ends once every request's context has ended.
func batchContext(batch []*request) (context.Context, func()) {
	if len(batch) == 1 {
		return batch[0].ctx, func() {}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(batch[0].ctx))
	var left atomic.Int64
	left.Store(int64(len(batch)))
	stops := make([]func() bool, len(batch))
	for i, r := range batch {
		stops[i] = context.AfterFunc(r.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// selectOutputs keeps the outputs named in names, in the model's order, or
// all of them when names is empty.
func selectOutputs(out []oip.Tensor, names []string) []oip.Tensor {
	if len(names) == 0 {
		return out
	}
	kept := make([]oip.Tensor, 0, len(names))
	for _, t := range out {
		for _, name := range names {
			if t.Name == name {
				kept = append(kept, t)
				break
			}
		}
	}
	return kept
}

// batchRows checks that inputs can join a batch and returns their number of
// rows (dimension 0).
func batchRows(inputs []oip.Tensor) (int, error) {
	if len(inputs) == 0 {
		return 0, &engine.InputError{Message: "no inputs: a batched request needs at least one input tensor"}
	}
	rows := int64(-1)
	for _, t := range inputs {
		if len(t.Shape) == 0 {
			return 0, &engine.InputError{Message: fmt.Sprintf("input %q is a scalar: batching needs dimension 0 to be the batch", t.Name)}
		}
		if t.Shape[0] < 1 {
			return 0, &engine.InputError{Message: fmt.Sprintf("input %q has %d rows (dimension 0): send at least one", t.Name, t.Shape[0])}
		}
		if rows >= 0 && t.Shape[0] != rows {
			return 0, &engine.InputError{Message: fmt.Sprintf("input %q has %d rows but %q has %d: dimension 0 is the batch and must agree across inputs", t.Name, t.Shape[0], inputs[0].Name, rows)}
		}
		rows = t.Shape[0]
		if err := checkLen(t); err != nil {
			return 0, &engine.InputError{Message: err.Error()}
		}
	}
	return int(rows), nil
}

// batchKey identifies the requests that may share a batch: same input
// names, datatypes and dimensions after the first, same requested outputs.
func batchKey(inputs []oip.Tensor, outputs []string) string {
	buf := make([]byte, 0, 64)
	for _, t := range inputs {
		buf = append(buf, t.Name...)
		buf = append(buf, 0)
		buf = append(buf, t.Datatype...)
		for _, d := range t.Shape[1:] {
			buf = append(buf, ',')
			buf = strconv.AppendInt(buf, d, 10)
		}
		buf = append(buf, 1)
	}
	for _, o := range outputs {
		buf = append(buf, 2)
		buf = append(buf, o...)
	}
	return string(buf)
}
