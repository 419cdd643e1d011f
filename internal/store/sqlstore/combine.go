package sqlstore

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
)

// Group commit where writes are serial (SQLite).
//
// A commit costs more than most of ebb's transactions: it writes every
// page the transaction changed to the write-ahead log, with a system call
// each, and the async queue's requests make three write transactions
// apiece (enqueue, claim, complete) whose pages (the table's last leaf,
// the tails of its indexes) are mostly the same ones. So writers that
// arrive while another's transaction runs wait together, and the next of
// them runs all of their functions in one transaction, each inside a
// savepoint of its own: a function that fails rolls back to its savepoint
// and gets its own error, the others commit together and share the
// commit's outcome. A writer alone runs as before, with no savepoint.
//
// Leadership passes from one batch to the next: a batch's leader, once
// its transaction ends, hands the writers that queued meanwhile to the
// first of them, and returns. A writer that finds no batch running
// yields once before leading, so that writers ready to run join it.

// writeOp is one writer's function waiting for, or in, a batch.
type writeOp struct {
	ctx context.Context
	fn  func(tx conn) error
	err error
	// state: opQueued until a leader takes it into a batch (opTaken), it
	// is chosen to lead (opLeading), or its writer gives up waiting
	// (opAbandoned).
	state atomic.Int32
	done  chan struct{} // closed when err is set
	lead  chan struct{} // closed when it must lead the queued ops
}

const (
	opQueued int32 = iota
	opLeading
	opTaken
	opAbandoned
)

// combiner queues the writers of a store with serial writes.
type combiner struct {
	mu      sync.Mutex
	queued  []*writeOp
	running bool // a batch runs or is being handed over
	batches atomic.Int64
}

// writeCombined runs fn in a transaction shared with the writers that
// wait at the same time (see above).
func (s *Store) writeCombined(ctx context.Context, fn func(tx conn) error) error {
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan struct{}), lead: make(chan struct{})}
	c := &s.comb
	c.mu.Lock()
	c.queued = append(c.queued, op)
	if c.running {
		c.mu.Unlock()
		select {
		case <-op.done:
			return op.err
		case <-op.lead:
		case <-ctx.Done():
			if op.state.CompareAndSwap(opQueued, opAbandoned) {
				return s.unavailable(ctx, ctx.Err())
			}
			// Taken already: its batch decides.
			select {
			case <-op.done:
				return op.err
			case <-op.lead:
			}
		}
		c.mu.Lock()
	} else {
		// A new leader lets the goroutines that can run first run: the
		// writers among them queue behind it and share its commit. On
		// few CPUs (one, as a pinned `ebb up`) the writers cannot run
		// while a batch does, so without this every batch but the
		// handed-over ones held one write: the async queue's no-op
		// ceiling doubled with it (bench: about 1,200 -> 2,500 req/s
		// on one CPU). With nothing else to run it returns at once.
		c.running = true
		c.mu.Unlock()
		runtime.Gosched()
		c.mu.Lock()
	}
	// running is true: set above, or left so by the leader that handed
	// this writer the queue.
	batch := c.queued
	c.queued = nil
	c.mu.Unlock()

	s.runBatch(batch)

	c.mu.Lock()
	handed := false
	for len(c.queued) > 0 && !handed {
		// The first writer still waiting takes everything queued.
		if next := c.queued[0]; next.state.CompareAndSwap(opQueued, opLeading) {
			close(next.lead)
			handed = true
		} else {
			c.queued = c.queued[1:] // abandoned
		}
	}
	c.running = handed
	c.mu.Unlock()
	<-op.done
	return op.err
}

// runBatch runs the functions of the ops still queued in one write
// transaction, retried as write's are, and finishes every op of batch.
func (s *Store) runBatch(batch []*writeOp) {
	s.comb.batches.Add(1)
	ops := batch[:0:0]
	for _, op := range batch {
		if op.state.CompareAndSwap(opQueued, opTaken) || op.state.CompareAndSwap(opLeading, opTaken) {
			ops = append(ops, op)
		}
	}
	defer func() {
		for _, op := range ops {
			close(op.done)
		}
	}()
	if len(ops) == 0 {
		return
	}
	defer s.lockWrites()() // single statements (exec) wait meanwhile
	if len(ops) == 1 {
		op := ops[0]
		op.err = s.retried(op.ctx, func() error { return s.writeOnce(op.ctx, op.fn) })
		return
	}
	// The transaction outlives any one writer's context, and so do its
	// statements (conn.shared): a writer that gives up while its function
	// runs gets its result all the same.
	ctx := context.WithoutCancel(ops[0].ctx)
	err := s.retried(ctx, func() error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		c := conn{s: s, q: tx, shared: ctx}
		for _, op := range ops {
			op.err = nil
			if _, err := c.exec(ctx, "SAVEPOINT ebb_write"); err != nil {
				tx.Rollback()
				return err
			}
			if op.err = op.fn(c); op.err != nil {
				_, err = c.exec(ctx, "ROLLBACK TO ebb_write")
			}
			if err == nil {
				_, err = c.exec(ctx, "RELEASE ebb_write")
			}
			if err != nil {
				tx.Rollback()
				return err
			}
		}
		return tx.Commit()
	})
	for _, op := range ops {
		switch {
		case err != nil:
			op.err = s.unavailable(op.ctx, err)
		case op.err != nil:
			op.err = s.unavailable(op.ctx, op.err)
		}
	}
}

// retried runs one attempt of a write transaction until it succeeds, fails
// for good, or maxAttempts ran.
func (s *Store) retried(ctx context.Context, attempt func() error) error {
	for n := 1; ; n++ {
		err := attempt()
		if err == nil || n == maxAttempts || !s.d.IsRetryable(err) {
			return s.unavailable(ctx, err)
		}
	}
}
