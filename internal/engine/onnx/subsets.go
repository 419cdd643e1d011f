//go:build cgo

package onnx

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A request naming some of a model's outputs runs on a session of a pruned
// copy of the model (prune.go) that computes only those, created on the
// first such request and kept for the next. The sessions are bounded:
//
//   - at most maxSubsetSessions of them per model;
//   - together at most a budget of pruned-model bytes (about what their
//     weights take in memory): as many as the model file has, but at least
//     minSubsetBudget and at most maxSubsetBudget. A replica serving a
//     model of 16 to 256 MiB may so hold its weights about twice; one of a
//     larger model runs a set pruned to over 256 MiB on the whole graph.
//     Each session also has ONNX Runtime's fixed cost, a few MiB, and its
//     own intra-op threads, idle between its runs;
//   - a session makes room for another only when no run has used it for
//     subsetIdle, so that clients alternating between more sets than fit
//     cannot make every request build a session.
//
// A set of outputs that does not fit, whose pruned graph would still have
// every node, or whose session ONNX Runtime refuses to create runs on the
// model's own session, fetching only those outputs: its answer is the same,
// computed with the rest of the graph.
const (
	maxSubsetSessions = 8
	minSubsetBudget   = 16 << 20
	maxSubsetBudget   = 256 << 20
	subsetIdle        = time.Minute
	// maxSubsetFallbacks bounds the sets remembered to run on the model's
	// own session for good.
	maxSubsetFallbacks = 64
)

// subsetBudget returns the pruned-model bytes the sessions of a model file
// of size bytes may hold together.
func subsetBudget(size int64) int64 { return min(max(size, minSubsetBudget), maxSubsetBudget) }

// subset is the session of one set of outputs.
type subset struct {
	// ready is closed once the entry is settled: sess is set, or nil for a
	// set that runs on the model's own session.
	ready chan struct{}
	sess  *session
	// inputs are sess's inputs as indexes of the model's.
	inputs []int
	// bytes is the pruned model's size, counted against the budget.
	bytes int64
	// refs counts the runs using sess; used is when the last ended.
	refs int
	used time.Time
	// why says why a settled set has no session, for tests.
	why string
}

// subsets are a model's sessions of output sets, by subsetKey.
type subsets struct {
	budget int64
	now    func() time.Time

	indexOnce sync.Once
	index     *graphIndex
	indexErr  error

	mu        sync.Mutex
	byKey     map[string]*subset
	sessions  int   // entries with a session or being created
	bytes     int64 // what they count against the budget
	fallbacks int   // entries settled without a session
}

func subsetKey(sel []int) string {
	parts := make([]string, len(sel))
	for i, j := range sel {
		parts[i] = strconv.Itoa(j)
	}
	return strings.Join(parts, ",")
}

// acquire returns the session computing the model's outputs at indexes
// sel, creating it when it is new and fits, or nil when the model's own
// session is to run. A session returned is the caller's until it calls
// release. It fails only when ctx ends while another request creates the
// session. The caller holds m.mu for reading.
func (s *subsets) acquire(ctx context.Context, m *Model, sel []int) (*subset, error) {
	key := subsetKey(sel)
	s.mu.Lock()
	if e := s.byKey[key]; e != nil {
		select {
		case <-e.ready:
		default:
			s.mu.Unlock()
			select {
			case <-e.ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			s.mu.Lock()
		}
		defer s.mu.Unlock()
		if e.sess == nil {
			return nil, nil
		}
		e.refs++
		return e, nil
	}
	if s.sessions >= maxSubsetSessions && !s.evict() {
		s.mu.Unlock()
		return nil, nil
	}
	if s.byKey == nil {
		s.byKey = map[string]*subset{}
	}
	e := &subset{ready: make(chan struct{})}
	s.byKey[key] = e
	s.sessions++
	s.mu.Unlock()

	sess, inputs, keep, err := s.create(m, sel, e)

	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(e.ready)
	e.used = s.now()
	if err == nil {
		e.sess, e.inputs = sess, inputs
		e.refs++
		return e, nil
	}
	s.sessions--
	s.bytes -= e.bytes
	e.bytes, e.why = 0, err.Error()
	if keep && s.fallbacks < maxSubsetFallbacks {
		s.fallbacks++
	} else {
		delete(s.byKey, key)
	}
	return nil, nil
}

// create returns a new session computing the outputs at sel and its inputs
// as indexes of the model's, counting its bytes in e. When it cannot, keep
// says whether the set is to run on the model's own session for good
// (false: until room is made).
func (s *subsets) create(m *Model, sel []int, e *subset) (sess *session, inputs []int, keep bool, err error) {
	s.indexOnce.Do(func() { s.index, s.indexErr = indexGraph(m.path) })
	if s.indexErr != nil {
		return nil, nil, true, fmt.Errorf("reading the graph: %w", s.indexErr)
	}
	names := make([]string, len(sel))
	for i, j := range sel {
		names[i] = m.outputs[j].name
	}
	plan := s.index.prune(names)
	if !plan.removed {
		return nil, nil, true, fmt.Errorf("outputs %q need every node", names)
	}
	if plan.size > s.budget {
		return nil, nil, true, fmt.Errorf("the pruned model has %d bytes, more than the budget of %d", plan.size, s.budget)
	}
	s.mu.Lock()
	for s.bytes+plan.size > s.budget {
		if !s.evict() {
			s.mu.Unlock()
			return nil, nil, false, fmt.Errorf("the pruned model's %d bytes do not fit in the budget now", plan.size)
		}
	}
	s.bytes += plan.size
	e.bytes = plan.size
	s.mu.Unlock()

	model, err := s.index.build(m.path, plan)
	if err != nil {
		return nil, nil, true, fmt.Errorf("writing the pruned model: %w", err)
	}
	dir, err := filepath.Abs(filepath.Dir(m.path))
	if err != nil {
		return nil, nil, true, err
	}
	sess, err = newSessionFromModel(model, dir, m.intraOp, m.interOp)
	if err != nil {
		return nil, nil, true, fmt.Errorf("creating the session of the pruned model: %w", err)
	}
	if inputs, err = m.matchSession(sess, names); err != nil {
		sess.release()
		return nil, nil, true, err
	}
	return sess, inputs, true, nil
}

// matchSession checks that sess, of a pruned copy of the model, has the
// outputs named, in order, and inputs of the model's; it returns their
// indexes among the model's inputs.
func (m *Model) matchSession(sess *session, names []string) ([]int, error) {
	outs, err := sess.io(true)
	if err != nil {
		return nil, err
	}
	got := make([]string, len(outs))
	for i, o := range outs {
		got[i] = o.name
	}
	if strings.Join(got, "\x00") != strings.Join(names, "\x00") {
		return nil, fmt.Errorf("the pruned model has outputs %q, not %q", got, names)
	}
	ins, err := sess.io(false)
	if err != nil {
		return nil, err
	}
	idx := make([]int, len(ins))
	for i, in := range ins {
		idx[i] = -1
		for j, spec := range m.inputs {
			if spec.name == in.name && spec.elem == in.elem {
				idx[i] = j
			}
		}
		if idx[i] < 0 {
			return nil, fmt.Errorf("the pruned model's input %q is not the model's", in.name)
		}
	}
	return idx, nil
}

// evict releases the session used least recently among those no run has
// used for subsetIdle, reporting whether there was one. s.mu is held.
func (s *subsets) evict() bool {
	var oldest *subset
	var key string
	now := s.now()
	for k, e := range s.byKey {
		if e.sess == nil || e.refs > 0 || now.Sub(e.used) < subsetIdle {
			continue
		}
		if oldest == nil || e.used.Before(oldest.used) {
			oldest, key = e, k
		}
	}
	if oldest == nil {
		return false
	}
	oldest.sess.release()
	oldest.sess = nil
	delete(s.byKey, key)
	s.sessions--
	s.bytes -= oldest.bytes
	return true
}

// release ends a run's use of e.
func (s *subsets) release(e *subset) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.refs--
	e.used = s.now()
}

// close releases every session. No run may be using one.
func (s *subsets) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.byKey {
		if e.sess != nil {
			e.sess.release()
			e.sess = nil
		}
	}
	s.byKey, s.sessions, s.bytes, s.fallbacks = nil, 0, 0, 0
}
