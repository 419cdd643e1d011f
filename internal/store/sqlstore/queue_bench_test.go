package sqlstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/queue"
)

// BenchmarkQueueCycle runs the queue's part of async requests on SQLite
// as the gateway and its worker do it, in backlogs of 1,000: requests
// enqueued by 16 clients at once, claimed (one to four at a time) and
// completed by 16 runners at once, then read back by 4 pollers. It
// reports the store's time per request; concurrent writers share commits
// (combine.go), which a benchmark of one writer at a time would not show.
func BenchmarkQueueCycle(b *testing.B) {
	ctx := context.Background()
	q := sqliteQueue(b)
	body := []byte(`{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,0.5]}]}`)
	const backlog, clients, runners, pollers = 1000, 16, 16, 4
	parallel := func(n int, fn func(g int) error) {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for g := range n {
			wg.Go(func() {
				if err := fn(g); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i += backlog {
		ids := make([]string, backlog)
		for k := range ids {
			ids[k] = queue.NewID()
		}
		parallel(clients, func(g int) error {
			for k := g; k < backlog; k += clients {
				if err := q.Enqueue(ctx, queue.Request{ID: ids[k], Tenant: "t", Deployment: "d", ContentType: "application/json",
					Header: map[string]string{}, Body: body, ResultTTL: time.Hour}); err != nil {
					return err
				}
			}
			return nil
		})
		if _, err := q.Depths(ctx); err != nil {
			b.Fatal(err)
		}
		parallel(runners, func(g int) error {
			for {
				rs, err := q.Claim(ctx, "d", 1+g%4, time.Minute)
				if err != nil || len(rs) == 0 {
					return err
				}
				for _, r := range rs {
					if _, err := q.Complete(ctx, r.ID, r.LeaseToken, queue.Result{Status: 200, ContentType: "application/json", Body: body}); err != nil {
						return err
					}
				}
			}
		})
		parallel(pollers, func(g int) error {
			for k := g; k < backlog; k += pollers {
				rec, err := q.Get(ctx, "t", ids[k])
				if err != nil {
					return err
				}
				if rec.State != queue.Done {
					b.Errorf("request %d is %s after every claim completed", k, rec.State)
				}
			}
			return nil
		})
	}
}
