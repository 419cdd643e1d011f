package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// produce reads the input once, in order, and sends every chunk not done
// yet as a task; it skips the rows of done ones. It closes tasks at the
// end; a failure (a bad row under onBadRow fail, an unreadable input) goes
// to errc and ends it.
func (x *run) produce(ctx context.Context, tasks chan<- *task, errc chan<- error) {
	defer close(tasks)
	fail := func(err error) {
		if ctx.Err() == nil {
			errc <- err
		}
	}
	in := x.in
	obj, err := in.reopen(ctx)
	if err != nil {
		fail(err)
		return
	}
	defer obj.Close()
	rr, err := in.rowsOf(obj)
	if err != nil {
		fail(fmt.Errorf("input %s: %w", in.l.uri, err))
		return
	}
	// A plain CSV's cells are its reader's buffer (borrowed), and its
	// rows of numbers go straight into the batch (nextInto).
	plain, _ := rr.(*plainCSVRows)
	skip := x.job.Spec.OnBadRow == serving.BadRowSkip
	row := make([]cell, len(in.m.wanted))
	for i := range in.chunks() {
		n := in.chunkRowsOf(i)
		if x.done[i] {
			if err := rr.skip(n); err != nil {
				fail(fmt.Errorf("input %s: skipping chunk %d: %w", in.l.uri, i, err))
				return
			}
			continue
		}
		b := newBatch(in.m, int(n))
		b.borrowed = plain != nil
		for k := range n {
			num := i*in.chunkRows + k
			var added bool
			if plain != nil {
				added, err = plain.nextInto(b, num, row)
			} else {
				err = rr.next(row)
			}
			if added {
				continue
			}
			if err == io.EOF {
				fail(fmt.Errorf("input %s ended at row %d; it had %d rows when the job started", in.l.uri, num, in.rows))
				return
			}
			if err == nil {
				err = b.add(num, row)
			}
			if re, ok := errors.AsType[*rowError](err); ok {
				if !skip {
					fail(fmt.Errorf("input %s: %v (onBadRow: skip would leave such rows out)", in.l.uri, re))
					return
				}
				b.bad = append(b.bad, re.Error())
				continue
			}
			if err != nil {
				fail(fmt.Errorf("input %s: row %d: %w", in.l.uri, num, err))
				return
			}
		}
		t := &task{index: i, id: in.chunkID(i), rows: n, batch: b}
		if b.rows() > 0 {
			if t.req, err = b.request(t.id); err != nil {
				fail(fmt.Errorf("chunk %d: %w", i, err))
				return
			}
		}
		select {
		case tasks <- t:
		case <-ctx.Done():
			return
		}
	}
}

// process sends a chunk, retrying, and encodes its part; checkpoint
// (commit.go) then makes it durable.
func (x *run) process(ctx context.Context, t *task) (finished, error) {
	start := x.now()
	first, last := t.index*x.in.chunkRows, t.index*x.in.chunkRows+t.rows-1
	var outs []outColumn
	if rows := t.batch.rows(); rows > 0 {
		var err error
		backoff := x.r.opts.RetryBackoff
		for attempt := 0; ; attempt++ {
			var resp Message
			resp, err = x.r.pred.Infer(ctx, x.deployment, t.req)
			if err == nil {
				outs, err = decodeResponse(resp, rows)
			}
			if err == nil || ctx.Err() != nil || attempt >= x.r.opts.Retries || errors.Is(err, ErrPermanent) {
				break
			}
			x.log.Warn("chunk failed; sending it again", "chunk", t.index, "attempt", attempt+1, "err", err)
			if sleep(ctx, backoff) != nil {
				break
			}
			backoff *= 2
		}
		if err != nil {
			return finished{}, fmt.Errorf("chunk %d (rows %d to %d) failed: %w", t.index, first, last, err)
		}
	}
	part, err := encodePart(x.in.m, t.batch.ids, outs, x.job.Spec.Output.Format)
	if err != nil {
		return finished{}, fmt.Errorf("chunk %d (rows %d to %d): %w", t.index, first, last, err)
	}
	return finished{t: t, part: part, dur: x.now().Sub(start)}, nil
}

// probeChunk sends a chunk of the probe and checkpoints it at once.
func (x *run) probeChunk(ctx context.Context, t *task) result {
	f, err := x.process(ctx, t)
	if err != nil {
		return result{t: t, err: err}
	}
	r := x.appendPart(f)
	if r.err != nil {
		return r
	}
	res := x.checkpoint(ctx, []result{r})
	return res[len(res)-1]
}

// record counts a chunk done.
func (x *run) record(res result) {
	t := res.t
	x.frames[t.id] = res.at
	if !x.done[t.index] {
		x.done[t.index] = true
		x.chunksDone++
		x.status.ChunksDone = x.chunksDone
		x.status.RowsDone += t.rows
		x.status.RowsSkipped += int64(len(t.batch.bad))
		for _, b := range t.batch.bad {
			if len(x.status.BadRows) < serving.MaxJobBadRows {
				x.status.BadRows = append(x.status.BadRows, b)
			}
		}
	}
	x.samples = append(x.samples, sample{at: x.now(), rows: int64(t.batch.rows())})
	if keep := max(8, 2*x.limitNow()); len(x.samples) > keep {
		x.samples = append(x.samples[:0], x.samples[len(x.samples)-keep:]...)
	}
}

// rate is the rows per second of the recent completions, 0 when unknown.
func (x *run) rate() float64 {
	if len(x.samples) < 2 {
		return 0
	}
	first, last := x.samples[0], x.samples[len(x.samples)-1]
	d := last.at.Sub(first.at)
	if d <= 0 {
		return 0
	}
	var rows int64
	for _, s := range x.samples[1:] {
		rows += s.rows
	}
	return float64(rows) / d.Seconds()
}

// resize lets n workers run: more start, those above n stop after their
// chunk. Workers send their finished chunks to the group commit (fin),
// their failures to results.
func (x *run) resize(ctx context.Context, n int, tasks <-chan *task, fin chan<- finished, results chan<- result) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.running == nil {
		x.running = map[int]bool{}
	}
	x.limit = n
	if x.resized != nil {
		close(x.resized)
	}
	x.resized = make(chan struct{})
	for s := range n {
		if !x.running[s] {
			x.running[s] = true
			x.wg.Go(func() { x.work(ctx, s, tasks, fin, results) })
		}
	}
}

func (x *run) limitNow() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.limit
}

// work is worker slot s: it takes tasks while s is below the limit.
func (x *run) work(ctx context.Context, s int, tasks <-chan *task, fin chan<- finished, results chan<- result) {
	for {
		x.mu.Lock()
		if s >= x.limit || ctx.Err() != nil {
			x.running[s] = false
			x.mu.Unlock()
			return
		}
		resized := x.resized
		x.mu.Unlock()
		select {
		case t, ok := <-tasks:
			if !ok {
				x.mu.Lock()
				x.running[s] = false
				x.mu.Unlock()
				return
			}
			f, err := x.process(ctx, t)
			if err != nil {
				select {
				case results <- result{t: t, err: err}:
				case <-ctx.Done():
				}
				continue
			}
			select {
			case fin <- f:
			case <-ctx.Done():
			}
		case <-resized:
		case <-ctx.Done():
		}
	}
}

// loop runs the chunks on the planned pool until all are done, checking
// every StatusEvery the budget, the windows, a cancel, and, every
// ReplanEvery, the plan.
func (x *run) loop(ctx, runCtx context.Context, stop func(), tasks <-chan *task, errc <-chan error) error {
	spec := x.job.Spec
	x.status.Phase = serving.JobRunning
	results := make(chan result, int(spec.Lease.MaxReplicas)*x.r.opts.PerReplica+1)
	// A few finished chunks wait while the group commit syncs: each
	// holds its part in memory until its turn.
	fin := make(chan finished, 4)
	left := x.in.chunks() - x.chunksDone
	x.wg.Go(func() { x.commit(runCtx, fin, results, left) })
	apply := func(n int32) error {
		if x.paused {
			n = 0
		}
		if err := x.setReplicas(ctx, n); err != nil {
			return err
		}
		x.resize(runCtx, int(n)*x.r.opts.PerReplica, tasks, fin, results)
		return nil
	}
	x.status.Plan.Replicas = max(x.status.Plan.Replicas, 1)
	if err := apply(x.status.Plan.Replicas); err != nil {
		stop()
		return x.failOrStop(ctx, fmt.Errorf("cannot scale to %d replicas: %w", x.status.Plan.Replicas, err))
	}
	x.writeStatus(ctx)
	tick := time.NewTicker(x.r.opts.StatusEvery)
	defer tick.Stop()
	lastReplan := x.now()
	for x.chunksDone < x.in.chunks() {
		select {
		case res := <-results:
			if res.err != nil {
				stop()
				return x.failOrStop(ctx, res.err)
			}
			x.record(res)
		case err := <-errc:
			stop()
			return x.failOrStop(ctx, err)
		case <-ctx.Done():
			stop()
			return ctx.Err()
		case <-tick.C:
			now := x.now()
			x.account(now)
			if used, most := x.status.ReplicaHours, spec.Lease.MaxReplicaHours; used >= most {
				stop()
				return x.end(ctx, serving.JobFailed, fmt.Sprintf("lease budget spent: %.2f of %.2f replica-hours used with %d of %d rows left",
					used, most, x.in.rows-x.status.RowsDone, x.in.rows))
			}
			if used, most := x.status.GPUHours, spec.Lease.MaxGPUHours; x.gpus > 0 && most > 0 && used >= most {
				stop()
				return x.end(ctx, serving.JobFailed, fmt.Sprintf("lease budget spent: %.2f of %.2f GPU-hours used with %d of %d rows left",
					used, most, x.in.rows-x.status.RowsDone, x.in.rows))
			}
			x.checkWindow(now, apply)
			if now.Sub(lastReplan) >= x.r.opts.ReplanEvery && !x.paused {
				lastReplan = now
				x.replan(now, apply)
			}
			x.progress(now)
			if x.writeStatus(ctx) {
				stop()
				return x.end(ctx, serving.JobCancelled, fmt.Sprintf("cancelled with %d of %d rows done", x.status.RowsDone, x.in.rows))
			}
		}
	}
	stop()
	return x.finish(ctx)
}

// checkWindow pauses the job (no replicas) outside its lease's windows
// and resumes it inside them.
func (x *run) checkWindow(now time.Time, apply func(int32) error) {
	open, next := openAt(x.job.Spec.Lease.Windows, now)
	switch {
	case !open && !x.paused:
		x.paused = true
		x.status.Message = "outside the lease's windows: paused until " + next.UTC().Format(time.RFC3339)
		x.event("window closed: replicas handed back until %s", next.UTC().Format(time.RFC3339))
	case open && x.paused:
		x.paused = false
		x.status.Message = ""
		x.event("window open: resuming with %d replicas", x.status.Plan.Replicas)
	default:
		return
	}
	if err := apply(x.status.Plan.Replicas); err != nil {
		x.log.Warn("cannot scale the job's replicas", "err", err)
	}
}

// replan checks the plan against the measured rate.
func (x *run) replan(now time.Time, apply func(int32) error) {
	spec := x.job.Spec
	perReplica := 0.0
	if x.replicas > 0 {
		perReplica = x.rate() / float64(x.replicas)
	}
	rp := x.r.opts.Planner.Replan(*x.status.Plan, spec.Deadline, spec.Lease, Progress{Now: now,
		RowsLeft: x.in.rows - x.status.RowsDone, RowsPerSecondPerReplica: perReplica, UsedReplicaHours: x.status.ReplicaHours,
		GPUsPerReplica: x.gpus, UsedGPUHours: x.status.GPUHours})
	old := x.status.Plan.Replicas
	x.status.Plan = &rp.Plan
	warnings := rp.Warnings
	if now.After(spec.Deadline) {
		warnings = append(warnings, fmt.Sprintf("deadline %s passed with %d rows left", spec.Deadline.UTC().Format(time.RFC3339), x.in.rows-x.status.RowsDone))
	}
	if fmt.Sprint(warnings) != fmt.Sprint(x.status.Warnings) {
		for _, w := range warnings {
			x.event("warning: %s", w)
		}
	}
	x.status.Warnings = warnings
	if !rp.Changed {
		return
	}
	x.event("re-planned at %.4g rows/s per replica: %d → %d replicas, finishing %s",
		perReplica, old, rp.Plan.Replicas, rp.Plan.Finish.UTC().Format(time.RFC3339))
	if err := apply(rp.Plan.Replicas); err != nil {
		x.log.Warn("cannot scale the job's replicas", "err", err)
	}
}

// progress sets the measured rate and the ETA.
func (x *run) progress(now time.Time) {
	rate := x.rate()
	x.status.RowsPerSecond = rate
	x.status.ETA = nil
	left := x.in.rows - x.status.RowsDone
	if rate <= 0 || left <= 0 {
		return
	}
	work := time.Duration(float64(left) / rate * float64(time.Second))
	spec := x.job.Spec
	far := spec.Deadline.Add(max(spec.Deadline.Sub(now), 0)*4 + 31*24*time.Hour)
	if eta, _, ok := walk(spec.Lease.Windows, now, far, work, 0); ok {
		x.status.ETA = &eta
	}
}

// waitOpen waits, replicas handed back, until the lease's windows let the
// job run; a cancel ends the wait and the job.
func (x *run) waitOpen(ctx context.Context) error {
	tick := time.NewTicker(x.r.opts.StatusEvery)
	defer tick.Stop()
	for {
		open, next := openAt(x.job.Spec.Lease.Windows, x.now())
		if open {
			return nil
		}
		if next.IsZero() {
			return x.end(ctx, serving.JobFailed, "the lease's windows never open")
		}
		x.status.Message = "waiting for the lease's window at " + next.UTC().Format(time.RFC3339)
		if x.writeStatus(ctx) {
			return x.end(ctx, serving.JobCancelled, "cancelled while waiting for its window")
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
