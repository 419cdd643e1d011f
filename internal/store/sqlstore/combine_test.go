package sqlstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// TestCombinedWrites enqueues from many goroutines at once on SQLite, whose
// writers then share transactions (combine.go), with some writes that fail
// inside a shared transaction (a duplicate id: a unique violation) and some
// whose context is cancelled while they wait. Every write that succeeded
// is stored, every failed one is not (the duplicates' originals stay), and
// the others in its transaction are not harmed.
func TestCombinedWrites(t *testing.T) {
	ctx := context.Background()
	q := sqliteQueue(t)
	const writers, each = 32, 30
	type outcome struct {
		id        string
		err       error
		duplicate bool
		cancelled bool
	}
	results := make([][]outcome, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for k := range each {
				o := outcome{id: fmt.Sprintf("r-%d-%d", g, k)}
				wctx := ctx
				switch {
				case k%7 == 6: // the id of this writer's previous request
					o.id, o.duplicate = fmt.Sprintf("r-%d-%d", g, k-1), true
				case k%11 == 10:
					c, cancel := context.WithCancel(ctx)
					cancel()
					wctx, o.cancelled = c, true
				}
				o.err = q.Enqueue(wctx, queue.Request{ID: o.id, Tenant: "t", Deployment: "d", Body: []byte(o.id),
					Header: map[string]string{}, Deadline: time.Now().Add(time.Hour), ResultTTL: time.Hour})
				results[g] = append(results[g], o)
			}
		})
	}
	wg.Wait()
	stored := 0
	for g := range writers {
		for _, o := range results[g] {
			rec, gerr := q.Get(ctx, "t", o.id)
			switch {
			case o.duplicate:
				if o.err == nil || !strings.Contains(o.err.Error(), "already exists") {
					t.Errorf("duplicate %s: %v, want already exists", o.id, o.err)
				}
				if gerr != nil {
					t.Errorf("the original of duplicate %s is gone: %v", o.id, gerr)
				}
			case o.err == nil:
				stored++
				if gerr != nil || rec.ID != o.id {
					t.Errorf("%s was acknowledged but cannot be read: %v", o.id, gerr)
				}
			case o.cancelled:
				// Refused before it ran, or its batch had taken it: either
				// way nothing acknowledged is missing; the record may be
				// there only if the write was taken.
			default:
				t.Errorf("%s: %v", o.id, o.err)
			}
		}
	}
	n, err := q.Depth(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	if n < stored {
		t.Errorf("depth %d, but %d enqueues were acknowledged", n, stored)
	}
	if stored < writers*each/2 {
		t.Errorf("only %d of %d enqueues succeeded", stored, writers*each)
	}
}

// TestCombinedWritesOneCPU: writers that become ready together share a
// transaction even when they take turns on one CPU (GOMAXPROCS=1, as a
// pinned `ebb up`), where none of them can run while a batch does: the
// first to lead yields once, and the others queue behind it.
func TestCombinedWritesOneCPU(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q := s.Queue(sqlstore.QueueOptions{})
	const writers = 32
	start := make(chan struct{})
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			<-start
			errs <- q.Enqueue(ctx, queue.Request{ID: fmt.Sprint("r-", g), Tenant: "t", Deployment: "d", Body: []byte("x"),
				Header: map[string]string{}, Deadline: time.Now().Add(time.Hour), ResultTTL: time.Hour})
		})
	}
	before := s.Batches()
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// One batch takes them all but for a writer the scheduler ran late;
	// without the yield it was one batch per writer.
	if n := s.Batches() - before; n > 4 {
		t.Errorf("%d writers that were ready together took %d transactions, want at most 4", writers, n)
	}
}

// sqliteQueue is the async queue of a SQLite store in a file of its own,
// closed at cleanup.
func sqliteQueue(tb testing.TB) *sqlstore.Queue {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "ebb.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s.Queue(sqlstore.QueueOptions{})
}
