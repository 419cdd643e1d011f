package queue

import "sync"

// Waiters lets readers of a request's result wait for it instead of
// polling: Wait registers interest in an id, Done wakes everyone waiting
// on it. A Worker calls Done for each result it stores (WorkerOptions.
// Waiters); the gateway's GET with "Prefer: wait=N" waits. A result
// stored by another process (another gateway's worker) wakes no one here,
// so a waiter also reads the queue again now and then. The zero Waiters
// is ready to use.
type Waiters struct {
	mu sync.Mutex
	m  map[string][]chan struct{}
}

// Wait returns a channel closed once Done(id) is called, and a function
// that withdraws the interest (call it when done waiting, whatever
// happened).
func (w *Waiters) Wait(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	w.mu.Lock()
	if w.m == nil {
		w.m = map[string][]chan struct{}{}
	}
	w.m[id] = append(w.m[id], ch)
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		chs := w.m[id]
		for i, c := range chs {
			if c == ch {
				chs = append(chs[:i], chs[i+1:]...)
				break
			}
		}
		if len(chs) == 0 {
			delete(w.m, id)
		} else {
			w.m[id] = chs
		}
	}
}

// Done wakes those waiting on id.
func (w *Waiters) Done(id string) {
	w.mu.Lock()
	chs := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	for _, c := range chs {
		close(c)
	}
}

// Len returns how many ids have waiters (for tests and metrics).
func (w *Waiters) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}
