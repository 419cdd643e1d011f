package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/internal/store"
)

// Checkpoints are written in groups (group commit): a finished chunk's
// part is appended to the Run's segment of the parts log (partslog.go)
// at once, and every few chunks, or a moment after the first of a group,
// the segment is synced (a file's fsync; on S3 the group's object PUT) and
// only then the group's chunks are recorded in the store, one by one. A
// chunk recorded has its frame whole in the log, so a crash loses at most
// the group not yet synced, whose chunks are sent again; a frame synced
// but not recorded (a crash between the two) belongs to a chunk that is
// sent again too, and the later frame is the one read (scanParts).

// finished is a chunk whose results are in, encoded as its part.
type finished struct {
	t    *task
	part []byte
	dur  time.Duration
}

// fail is the result of chunk t that err ends.
func (x *run) fail(t *task, err error) result {
	first, last := t.index*x.in.chunkRows, t.index*x.in.chunkRows+t.rows-1
	return result{t: t, err: fmt.Errorf("chunk %d (rows %d to %d): %w", t.index, first, last, err)}
}

// appendPart appends a finished chunk's part to the Run's segment; its
// result is ready for checkpoint, which makes it durable.
func (x *run) appendPart(f finished) result {
	at, err := x.parts.append(f.t.id, f.part)
	if err != nil {
		return x.fail(f.t, err)
	}
	return result{t: f.t, dur: f.dur, at: at}
}

// checkpoint makes a group of chunks whose parts are appended durable:
// the segment synced, then their checkpoints recorded. It returns their
// results, the first failure ending the group.
func (x *run) checkpoint(ctx context.Context, group []result) []result {
	if len(group) == 0 {
		return nil
	}
	if err := x.parts.sync(ctx); err != nil {
		return []result{x.fail(group[0].t, err)}
	}
	for i, r := range group {
		t := r.t
		if err := x.r.st.PutJobChunk(ctx, store.JobChunk{Job: x.job.Name, ID: t.id, Index: t.index, Rows: t.rows, Skipped: int64(len(t.batch.bad))}); err != nil {
			return append(group[:i], x.fail(t, err))
		}
	}
	return group
}

// commit runs the group commit of the loop: it appends the parts of the
// finished chunks the workers send as they come, and checkpoints them in
// groups of at most Options.CommitChunks (or groupBytes of parts), each
// one at the latest Options.CommitDelay after its first chunk came, or at
// once when the last of the expect chunks the Run still has to do came.
// It sends their results on.
func (x *run) commit(ctx context.Context, in <-chan finished, results chan<- result, expect int64) {
	var group []result
	var size int
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	send := func(res []result) bool {
		for _, r := range res {
			select {
			case results <- r:
			case <-ctx.Done():
				return false
			}
		}
		return true
	}
	flush := func() bool {
		timer.Stop()
		res := x.checkpoint(ctx, group)
		group, size = nil, 0
		return send(res)
	}
	var got int64
	for {
		var wait <-chan time.Time
		if len(group) > 0 {
			wait = timer.C
		}
		select {
		case f := <-in:
			got++
			r := x.appendPart(f)
			if r.err != nil {
				send([]result{r})
				return
			}
			group = append(group, r)
			size += len(f.part)
			if len(group) == 1 {
				timer.Reset(x.r.opts.CommitDelay)
			}
			if len(group) >= x.r.opts.CommitChunks || size >= groupBytes || got >= expect {
				if !flush() {
					return
				}
			}
		case <-wait:
			if !flush() {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}
