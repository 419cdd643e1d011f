package activator_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/fairqueue"
	"github.com/ebb-ml/ebb/internal/routing"
)

// starter stands in for the autoscaler: the first wake-up starts a
// replica, which publish routes.
type starter struct {
	once    sync.Once
	publish func()
}

func (s *starter) Wake(string) { s.once.Do(func() { go s.publish() }) }

// Example_fairAdmission shows how the activator and a fair queue compose in
// front of a deployment with spec.scaling.maxConcurrency: the activator
// holds requests while the deployment is cold (bounded per tenant) and
// wakes the autoscaler; once a replica is routed it releases them all, and
// the deployment's fairqueue.Queue admits them within its capacity
// (maxConcurrency per ready replica), interactive before batch and round
// robin over tenants. Whoever publishes routes sets the queue's capacity
// from each route, before publishing it.
func Example_fairAdmission() {
	var table routing.Table
	queue := fairqueue.New(0, fairqueue.Options{})
	publish := func(rt routing.Route) {
		queue.SetCapacity(rt.Capacity())
		table.Publish(rt)
	}
	publish(routing.Route{Deployment: "m", MaxConcurrency: 2}) // cold
	fmt.Println("capacity while cold:", queue.Capacity())

	wake := &starter{publish: func() {
		publish(routing.Route{Deployment: "m", MaxConcurrency: 2, Endpoints: []*balance.Endpoint{balance.NewEndpoint("r1", "http://127.0.0.1:1")}})
	}}
	act := activator.New(&table, wake, activator.Options{MaxQueuePerTenant: 100})

	// serve is the gateway's path for one request.
	serve := func(ctx context.Context, tenant string, prio fairqueue.Priority) error {
		rt, err := act.WaitTenant(ctx, "m", tenant) // held while cold; at once when warm
		if err != nil {
			return err // ErrTenantQueueFull: 429; the others: 503
		}
		release, err := queue.Acquire(ctx, tenant, prio)
		if err != nil {
			return err // fairqueue.ErrTenantQueueFull: 429; the others: 503
		}
		defer release()
		_ = rt.Endpoints // proxy the request to one of them
		return nil
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	served := map[string]int{}
	for _, r := range []struct {
		tenant string
		prio   fairqueue.Priority
		n      int
	}{{"a", fairqueue.Batch, 30}, {"b", fairqueue.Interactive, 3}} {
		for range r.n {
			wg.Go(func() {
				if err := serve(context.Background(), r.tenant, r.prio); err != nil {
					fmt.Println(err)
					return
				}
				mu.Lock()
				served[r.tenant]++
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	fmt.Println("capacity with one replica:", queue.Capacity())
	fmt.Printf("served: a=%d b=%d, in flight %d\n", served["a"], served["b"], queue.InFlight())
	// Output:
	// capacity while cold: 0
	// capacity with one replica: 2
	// served: a=30 b=3, in flight 0
}
