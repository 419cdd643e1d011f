package fairqueue

import "fmt"

// The order in which waiters are granted slots. Each tenant with requests
// waiting has one lane per priority level, its waiters oldest first. A
// level's lanes with waiters form a ring; the lane whose turn it is (cur)
// is granted up to its tenant's weight in slots, then the turn passes to
// the next lane. A lane that starts waiting joins the ring just before
// cur, behind every lane already waiting (the tail of deficit round
// robin's active list), so a newcomer neither jumps the tenants already
// waiting nor waits for more than one turn of each. Every operation is
// O(1) but the scan over the two levels.

// waiter is one request waiting for a slot.
type waiter struct {
	prev, next *waiter // neighbours in its lane
	lane       *lane
	ready      chan struct{} // closed when granted
	granted    bool
}

// lane is one tenant's waiters at one level, oldest first.
type lane struct {
	tenant     *tenant
	level      Priority
	head, tail *waiter
	prev, next *lane // neighbours in the level's ring; nil while empty
	credit     int   // grants left in the lane's current turn
}

// tenant is one tenant with requests waiting.
type tenant struct {
	name   string
	weight int
	queued int // waiters in all its lanes
	lanes  [levels]lane
}

// ring is the circle of one level's lanes with waiters; cur is the lane
// whose turn it is, nil when none waits.
type ring struct{ cur *lane }

// pushLocked queues w in tenant's lane at level prio, or says which bound
// forbids it.
func (q *Queue) pushLocked(w *waiter, name string, prio Priority) error {
	if q.waiting.Load() >= int64(q.opts.MaxQueue) {
		return fmt.Errorf("%w (%d queued)", ErrQueueFull, q.opts.MaxQueue)
	}
	t := q.tenants[name]
	switch {
	case t == nil:
		t = &tenant{name: name, weight: q.weight(name)}
		for i := range t.lanes {
			t.lanes[i] = lane{tenant: t, level: Priority(i)}
		}
		q.tenants[name] = t
	case t.queued >= q.opts.MaxQueuePerTenant:
		return fmt.Errorf("%w (%d queued for tenant %q)", ErrTenantQueueFull, q.opts.MaxQueuePerTenant, name)
	}
	l := &t.lanes[prio]
	w.lane = l
	if l.tail == nil {
		l.head, l.tail = w, w
		q.turns[prio].join(l)
	} else {
		w.prev, l.tail.next, l.tail = l.tail, w, w
	}
	t.queued++
	q.waiting.Add(1)
	return nil
}

// removeLocked takes w out of its lane, wherever it stands.
func (q *Queue) removeLocked(w *waiter) {
	l := w.lane
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next, w.lane = nil, nil, nil
	if l.head == nil {
		q.turns[l.level].leave(l)
	}
	t := l.tenant
	if t.queued--; t.queued == 0 {
		delete(q.tenants, t.name)
	}
	q.waiting.Add(-1)
}

// nextLocked takes the waiter whose turn it is out of the queue: the
// highest level with a waiter, the oldest waiter of the lane whose turn it
// is there. It returns nil when none waits.
func (q *Queue) nextLocked() *waiter {
	for i := range q.turns {
		r := &q.turns[i]
		l := r.cur
		if l == nil {
			continue
		}
		if l.credit <= 0 {
			l.credit = l.tenant.weight
		}
		if l.credit--; l.credit == 0 {
			r.cur = l.next
		}
		w := l.head
		q.removeLocked(w)
		return w
	}
	return nil
}

// join adds l, which just got its first waiter, to the ring behind every
// lane already in it.
func (r *ring) join(l *lane) {
	if r.cur == nil {
		l.prev, l.next, r.cur = l, l, l
		return
	}
	l.prev, l.next = r.cur.prev, r.cur
	r.cur.prev.next = l
	r.cur.prev = l
}

// leave removes l, which has no waiter left, from the ring.
func (r *ring) leave(l *lane) {
	if l.next == l {
		r.cur = nil
	} else {
		l.prev.next, l.next.prev = l.next, l.prev
		if r.cur == l {
			r.cur = l.next
		}
	}
	l.prev, l.next, l.credit = nil, nil, 0
}
