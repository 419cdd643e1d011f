package queue

import (
	"sync"
	"time"
)

// Waiters lets readers of a request's result wait for it instead of
// polling: Wait registers interest in an id, Done wakes everyone waiting
// on it, with the result when the caller has it. A Worker calls Done for
// each result it stores (WorkerOptions.Waiters), with that result, so
// that a waiter answers without reading the queue again; the gateway's
// GET with "Prefer: wait=N" waits. A result stored by another process
// (another gateway's worker) wakes no one here, so a waiter also reads the
// queue again now and then. The zero Waiters is ready to use.
//
// Waiters also remembers, for a few seconds, the results this process's
// worker stored (Stored), so that a reader that comes for one just after
// it was stored (a client polling in order, a GET that missed the wake)
// is answered without reading the queue: Known. A stored result never
// changes (the first completion wins), so the memory is never stale; it
// is bounded in entries and bytes, and it forgets a result before the
// record would expire. It remembers as well the requests this process
// accepted (Accepted), pending: a reader that will wait for the result
// anyway (GET with Prefer: wait) starts waiting without reading the queue,
// which it reads again on its next recheck. That memory may be stale (the
// request finished in another process), so it is only a starting point.
type Waiters struct {
	// Now is the clock; nil: time.Now.
	Now func() time.Time

	mu sync.Mutex
	m  map[string][]*Waiter
	// known holds the remembered records by id; order, the ids in the
	// order stored (the oldest forgotten first); knownBytes, the bytes
	// of the remembered result bodies.
	known      map[string]knownRecord
	order      []orderSlot
	slots      uint64
	knownBytes int
}

// orderSlot is an id's place in the order remembered: slot tells it from
// a later place of the same id (a result after its pending record).
type orderSlot struct {
	id   string
	slot uint64
}

// knownRecord is a remembered record and when to forget it.
type knownRecord struct {
	rec   Record
	until time.Time
	slot  uint64
}

// Bounds of what Waiters remembers.
const (
	knownFor      = 10 * time.Second
	maxKnown      = 4096
	maxKnownBytes = 8 << 20
	maxKnownBody  = 256 << 10 // a larger result is read from the queue
)

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
// they read it from the queue, and a pending record Accepted remembered is
// forgotten). res is shared by the readers: none may change it.
func (w *Waiters) Done(id string, res *Result) {
	w.mu.Lock()
	ws := w.m[id]
	delete(w.m, id)
	if k, ok := w.known[id]; ok && res == nil && k.rec.State == Pending {
		delete(w.known, id)
	}
	w.mu.Unlock()
	for _, wt := range ws {
		wt.res = res
		close(wt.done)
	}
}

// Stored wakes those waiting on r's id with res, the result the caller
// just stored for r, as Done does, and remembers the record for Known.
func (w *Waiters) Stored(r *Request, res *Result) {
	w.remember(r, res)
	w.Done(r.ID, res)
}

func (w *Waiters) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

// Accepted remembers r, just stored by this process, as pending, for
// Known.
func (w *Waiters) Accepted(r *Request) {
	if r.ResultTTL <= 0 {
		return
	}
	rec := Record{ID: r.ID, Tenant: r.Tenant, Deployment: r.Deployment, Version: r.Version, State: Pending,
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt(), Callback: r.Callback}
	if r.Callback != "" {
		rec.CallbackState = CallbackWaiting
	}
	w.keep(rec, rec.ExpiresAt)
}

// remember keeps r's record, with res, for Known.
func (w *Waiters) remember(r *Request, res *Result) {
	if r.ResultTTL <= 0 || len(res.Body) > maxKnownBody || (res.Body == nil && res.BodyRef != "") {
		return
	}
	done := res.CompletedAt
	if done.IsZero() {
		done = w.now()
	}
	w.keep(Record{ID: r.ID, Tenant: r.Tenant, Deployment: r.Deployment, Version: r.Version, State: Done,
		CreatedAt: r.CreatedAt, ExpiresAt: done.Add(r.ResultTTL), Attempts: r.Attempt, Result: res}, done.Add(r.ResultTTL))
}

// keep remembers rec for Known until knownFor from now, or until expires
// when sooner. A result replaces a pending record; nothing replaces a
// result.
func (w *Waiters) keep(rec Record, expires time.Time) {
	now := w.now()
	until := now.Add(knownFor)
	if expires.Before(until) {
		until = expires // the record expires first
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.known == nil {
		w.known = map[string]knownRecord{}
	}
	if k, ok := w.known[rec.ID]; ok && k.rec.State != Pending {
		return
	}
	w.slots++
	w.known[rec.ID] = knownRecord{rec: rec, until: until, slot: w.slots} // a pending one's place is left empty
	w.order = append(w.order, orderSlot{id: rec.ID, slot: w.slots})
	w.knownBytes += rec.bodyLen()
	// Forget the oldest while over a bound, or already due.
	for len(w.order) > 0 {
		front := w.order[0]
		k, ok := w.known[front.id]
		ok = ok && k.slot == front.slot
		if ok && len(w.order) <= maxKnown && w.knownBytes <= maxKnownBytes && now.Before(k.until) {
			break
		}
		if ok {
			w.knownBytes -= k.rec.bodyLen()
			delete(w.known, front.id)
		}
		w.order[0] = orderSlot{}
		w.order = w.order[1:]
	}
	if len(w.order) == 0 {
		w.order = nil // let the backing array go
	}
}

// bodyLen is the length of the result body a record holds.
func (r Record) bodyLen() int {
	if r.Result == nil {
		return 0
	}
	return len(r.Result.Body)
}

// Known returns tenant's request id as remembered by Stored, with its
// result, or by Accepted, pending; false when it is not remembered
// (another tenant's id is not): read the queue. A done record carries no
// callback delivery state; a pending one may be stale.
func (w *Waiters) Known(tenant, id string) (Record, bool) {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	k, ok := w.known[id]
	if !ok || k.rec.Tenant != tenant || !now.Before(k.until) {
		return Record{}, false
	}
	return k.rec, true
}

// Len returns how many ids have waiters (for tests and metrics).
func (w *Waiters) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}
