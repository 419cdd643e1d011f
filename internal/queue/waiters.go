package queue

import "sync"

// Waiters lets readers of a request's result wait for it instead of
// polling: Wait registers interest in an id, Done wakes everyone waiting
// on it, with the result when the caller has it. A Worker calls Done for
// each result it stores (WorkerOptions.Waiters), with that result, so
// that a waiter answers without reading the queue again; the gateway's
// GET with "Prefer: wait=N" waits. A result stored by another process
// (another gateway's worker) wakes no one here, so a waiter also reads the
// queue again now and then. The zero Waiters is ready to use.
type Waiters struct {
	mu sync.Mutex
	m  map[string][]*Waiter
}

// A Waiter is one reader's interest in a result.
type Waiter struct {
	done chan struct{}
	res  *Result // set before done is closed; nil when Done had none
}

// Done is closed once the result is stored.
func (w *Waiter) Done() <-chan struct{} { return w.done }

// Result is the result Done was given, once Done is closed; nil when it
// was given none (read the queue), or for a nil Waiter.
func (w *Waiter) Result() *Result {
	if w == nil {
		return nil
	}
	select {
	case <-w.done:
		return w.res
	default:
		return nil
	}
}

// Wait registers interest in id's result, and returns the Waiter and a
// function that withdraws the interest (call it when done waiting,
// whatever happened).
func (w *Waiters) Wait(id string) (*Waiter, func()) {
	wt := &Waiter{done: make(chan struct{})}
	w.mu.Lock()
	if w.m == nil {
		w.m = map[string][]*Waiter{}
	}
	w.m[id] = append(w.m[id], wt)
	w.mu.Unlock()
	return wt, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		ws := w.m[id]
		for i, c := range ws {
			if c == wt {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(w.m, id)
		} else {
			w.m[id] = ws
		}
	}
}

// Done wakes those waiting on id, giving them res, the result stored (nil:
// they read it from the queue). res is shared by the readers: none may
// change it.
func (w *Waiters) Done(id string, res *Result) {
	w.mu.Lock()
	ws := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	for _, wt := range ws {
		wt.res = res
		close(wt.done)
	}
}

// Len returns how many ids have waiters (for tests and metrics).
func (w *Waiters) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}
