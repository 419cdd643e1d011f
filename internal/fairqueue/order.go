package fairqueue

import "fmt"

// The order in which waiters are granted slots. Each tenant with requests
// waiting has one lane per priority level, its waiters oldest first. A
// level serves its lanes in rounds (deficit round robin): in a round each
// lane gets up to its tenant's weight in grants, in the order the lanes
// joined the round; a lane that used its grants moves to the next round,
// and the next round begins when this one has no lane left. A lane that
// starts waiting joins the current round, behind the lanes still in it,
// unless its tenant already had its weight in grants in this round.
// So a tenant that was idle is served before the backlogged tenants'
// next turn — as start-time fair queueing serves a flow that was idle at
// the current virtual time — and waits only for the requests already
// running and the lanes that came before it in this round, however deep
// another tenant's backlog is; tenants waiting at once are served in turn.
// Every operation is O(1) but the scan over the two levels.

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
	prev, next *lane     // neighbours in its round's list
	in         *laneList // the round it waits in; nil while empty
	credit     int       // grants left in the lane's current round
}

// tenant is one tenant with requests waiting.
type tenant struct {
	name   string
	weight int
	queued int // waiters in all its lanes
	lanes  [levels]lane
}

// laneList is the lanes of one round, in the order they joined it.
type laneList struct{ head, tail *lane }

// ring is one level's lanes with waiters: those the current round still
// serves (now) and those that used their grants in it (next). spent
// counts each tenant's grants in the current round, so a tenant whose
// lane empties and fills again within a round gets no more than its
// weight in it.
type ring struct {
	now, next laneList
	spent     map[string]int
}

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
		r := &q.turns[prio]
		if used := r.spent[name]; used < t.weight {
			l.credit = t.weight - used
			r.now.push(l) // the current round, behind those in it
		} else {
			l.credit = t.weight
			r.next.push(l) // its turn in this round is used
		}
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
		l.in.remove(l)
		l.credit = 0
	}
	t := l.tenant
	if t.queued--; t.queued == 0 {
		delete(q.tenants, t.name)
	}
	q.waiting.Add(-1)
}

// nextLocked takes the waiter whose turn it is out of the queue: the
// highest level with a waiter; there, the oldest waiter of the first lane
// of the current round, beginning the next round when the current one is
// done. It returns nil when none waits.
func (q *Queue) nextLocked() *waiter {
	for i := range q.turns {
		r := &q.turns[i]
		if r.now.head == nil {
			if r.next.head == nil {
				continue
			}
			r.now, r.next = r.next, laneList{} // a new round
			for l := r.now.head; l != nil; l = l.next {
				l.in, l.credit = &r.now, l.tenant.weight
			}
			clear(r.spent)
		}
		l := r.now.head
		w := l.head
		if r.spent == nil {
			r.spent = map[string]int{}
		}
		r.spent[l.tenant.name]++
		if l.credit--; l.credit <= 0 && w.next != nil {
			r.now.remove(l) // its grants in this round are used
			r.next.push(l)
		}
		q.removeLocked(w)
		return w
	}
	return nil
}

// push appends l to the list.
func (ls *laneList) push(l *lane) {
	l.in, l.next, l.prev = ls, nil, ls.tail
	if ls.tail != nil {
		ls.tail.next = l
	} else {
		ls.head = l
	}
	ls.tail = l
}

// remove takes l out of the list.
func (ls *laneList) remove(l *lane) {
	if l.prev != nil {
		l.prev.next = l.next
	} else {
		ls.head = l.next
	}
	if l.next != nil {
		l.next.prev = l.prev
	} else {
		ls.tail = l.prev
	}
	l.prev, l.next, l.in = nil, nil, nil
}
