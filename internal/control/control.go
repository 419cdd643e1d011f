// Package control runs the control loop: for every deployment in the store it
// compares the replicas the autoscaler wants with the replicas that exist,
// starts and stops replicas through a replica.Backend to close the gap, and
// publishes the ready ones to the routing table the data plane reads.
//
// One goroutine (Run) owns all deployment state. Everything slow — starting a
// replica, waiting for it to be ready, stopping it, probing it — runs in its
// own goroutine and reports back as an event, so the loop never blocks on a
// replica and a cold deployment starts within one event of its first request.
package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"k8s.io/utils/clock"
)

// Store is what the control loop reads and writes.
type Store interface {
	ListDeployments(ctx context.Context) ([]serving.Deployment, error)
	GetDeployment(ctx context.Context, name string) (serving.Deployment, error)
	PutReplica(ctx context.Context, h replica.Handle) error
	DeleteReplica(ctx context.Context, id string) error
	ListReplicas(ctx context.Context) ([]replica.Handle, error)
}

// Options tune the control loop; zero values take the defaults shown.
type Options struct {
	// Clock drives ticks and timestamps; default the real clock.
	Clock clock.WithTicker
	// Tick is the autoscaling period; default 1s.
	Tick time.Duration
	// ProbeEvery is how often ready replicas are health-checked; default 5s.
	ProbeEvery time.Duration
	// DrainTimeout bounds how long a stopping replica may finish its
	// in-flight requests before it is killed; default 30s.
	DrainTimeout time.Duration
	// StartTimeout bounds how long a replica may take from Start until it
	// is ready (model download and load included) before it is stopped and
	// counted as a failed start; default 10m.
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the delay before a failed replica is
	// started again; defaults 250ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// CrashLimit failed starts in a row within CrashWindow fail a
	// deployment; before that, requests stay held while replicas restart
	// (crashloop.go). Defaults DefaultCrashLimit and DefaultCrashWindow.
	CrashLimit  int
	CrashWindow time.Duration
	// Logger receives the loop's logs; default slog.Default().
	Logger *slog.Logger
	// Metrics, when set, receives replica counts and cold-start timings.
	Metrics *Metrics
	// Resolver resolves registry versions; default: models are paths.
	Resolver Resolver
	// Demand, when set, is where the loop reads each deployment's demand
	// instead of the in-process Recorder that the routes carry: the
	// operator sums what every gateway pod reports.
	Demand Demand
	// OnScale, when set, is told every change of a deployment's desired
	// replicas with the autoscaler's reason (the operator records it as a
	// Kubernetes event). It runs on the loop goroutine and must not block.
	OnScale func(deployment string, from, to int32, reason string)
	// ResolveEvery is how often deployments that follow a registry alias
	// are resolved again, in case it moved without a NotifyModel (another
	// ebb sharing the store moved it); default 30s.
	ResolveEvery time.Duration
	// Cluster says replicas run as pods (the operator), which apply the
	// whole spec.template themselves. Default false, replicas are processes
	// on this machine (`ebb up`): the loop then sets the process limits of
	// template.resources (serving.ProcessEnv) on each replica and reports
	// the spec fields one machine cannot honour in Status.Ignored
	// (serving.Ignored).
	Cluster bool
	// MaxReplicasTotal caps the replicas of all deployments together
	// (capacity.go); a deployment held back by it says so in
	// status.reason. Zero or less: no cap (the cluster, where the
	// scheduler places pods).
	MaxReplicasTotal int
	// ColdStarts, when set, records each replica's cold start as spans
	// (trace.go); nil: no tracing.
	ColdStarts *telemetry.ColdStarts
}

// Controller reconciles deployments with replicas. Create it with New and
// run it with Run.
type Controller struct {
	store   Store
	backend replica.Backend
	routes  *routing.Table
	opts    Options
	log     *slog.Logger

	probes  *http.Client // health probes; its own pool, sized for many replicas
	events  chan event
	loaded  chan struct{} // closed once Run has loaded the store
	stopped chan struct{} // closed when Run returns
	wg      sync.WaitGroup

	// wakeMu guards wakes and notes, the names waiting for the loop.
	wakeMu sync.Mutex
	wakes  map[string]bool // a request waits for a cold deployment
	notes  map[string]bool // a deployment's spec changed
	models map[string]bool // a registry model's aliases changed
	kick   chan struct{}   // cap 1: something is in wakes, notes or models
	syncs  chan syncReq    // Sync calls waiting for a reload
	// parked are Syncs waiting for their deployment's model to resolve;
	// only the loop goroutine touches it.
	parked map[string][]chan struct{}

	// statusMu guards status and inUse, the loop's published view for
	// readers.
	statusMu sync.RWMutex
	status   map[string]serving.Status
	inUse    map[string]map[string]bool // deployment → "model:N" it uses
	// tracks are the traffic split of each deployment that has one.
	tracks map[string][]serving.Track

	// deps is owned by the Run goroutine.
	deps map[string]*deployment
	// pools and pooled are the multi-model pools and the deployments
	// hosted in them, by name (pool.go); owned by the Run goroutine.
	// poolStatus, guarded by statusMu, is each pool's published status;
	// poolHTTP talks to the pools' replicas.
	pools      map[string]*poolState
	pooled     map[string]*poolModel
	poolStatus map[string]serving.PoolStatus
	poolHTTP   *http.Client

	history eventLog // recent events per deployment (events.go)
	costs   costBook // replica-seconds per deployment (cost.go)
	// lastTick is when onTick last ran: replica-seconds count the time
	// between ticks.
	lastTick time.Time

	// decisions are the autoscaler's latest decisions (decisions.go).
	decisions decisions
}

// New returns a Controller. It starts nothing until Run.
func New(st Store, backend replica.Backend, routes *routing.Table, opts Options) *Controller {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Tick <= 0 {
		opts.Tick = time.Second
	}
	if opts.ProbeEvery <= 0 {
		opts.ProbeEvery = 5 * time.Second
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 10 * time.Minute
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 250 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.CrashLimit <= 0 {
		opts.CrashLimit = DefaultCrashLimit
	}
	if opts.CrashWindow <= 0 {
		opts.CrashWindow = DefaultCrashWindow
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Resolver == nil {
		opts.Resolver = paths{}
	}
	if opts.ResolveEvery <= 0 {
		opts.ResolveEvery = 30 * time.Second
	}
	return &Controller{
		store:   st,
		backend: backend,
		routes:  routes,
		opts:    opts,
		log:     opts.Logger,
		probes: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     2 * opts.ProbeEvery,
		}},
		events:  make(chan event, 64),
		loaded:  make(chan struct{}),
		stopped: make(chan struct{}),
		wakes:   map[string]bool{},
		notes:   map[string]bool{},
		models:  map[string]bool{},
		inUse:   map[string]map[string]bool{},
		kick:    make(chan struct{}, 1),
		syncs:   make(chan syncReq),
		status:  map[string]serving.Status{},
		tracks:  map[string][]serving.Track{},
		deps:    map[string]*deployment{},
		costs:   costBook{started: opts.Clock.Now()},

		pools:      map[string]*poolState{},
		pooled:     map[string]*poolModel{},
		poolStatus: map[string]serving.PoolStatus{},
		poolHTTP:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}},
	}
}

// Wake tells the loop that a request waits for a deployment with no ready
// replica. It never blocks.
func (c *Controller) Wake(name string) { c.signal(c.wakes, name) }

// Notify tells the loop that a deployment was created, changed or deleted in
// the store. It never blocks.
func (c *Controller) Notify(name string) { c.signal(c.notes, name) }

func (c *Controller) signal(set map[string]bool, name string) {
	c.wakeMu.Lock()
	set[name] = true
	c.wakeMu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Controller) takeSignals() (wakes, notes, models []string) {
	c.wakeMu.Lock()
	defer c.wakeMu.Unlock()
	take := func(set map[string]bool) []string {
		var out []string
		for n := range set {
			out = append(out, n)
		}
		clear(set)
		return out
	}
	return take(c.wakes), take(c.notes), take(c.models)
}

type syncReq struct {
	name string
	done chan struct{}
}

// Sync is Notify that returns once the loop has applied the change: the
// deployment's route is published (or removed), so the gateway knows it,
// with the registry version its model resolved to.
// It returns ctx's error if the loop did not get to it in time.
func (c *Controller) Sync(ctx context.Context, name string) error {
	req := syncReq{name: name, done: make(chan struct{})}
	select {
	case c.syncs <- req:
	case <-c.stopped:
		return errors.New("control loop stopped")
	case <-ctx.Done():
		c.Notify(name)
		return ctx.Err()
	}
	select {
	case <-req.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status returns the latest observed status of a deployment; the zero Status
// when the loop has not seen it. A deployment that splits its traffic
// reports every track: its replicas, counted together and per target.
func (c *Controller) Status(name string) serving.Status {
	c.statusMu.RLock()
	defer c.statusMu.RUnlock()
	st := c.status[name]
	tracks := c.tracks[name]
	if len(tracks) == 0 {
		return st
	}
	st.ReplicaStatuses = slices.Clone(st.ReplicaStatuses)
	st.Traffic = make([]serving.TrafficStatus, 0, len(tracks))
	for _, t := range tracks {
		ts := st
		if !t.Primary {
			ts = c.status[t.Key]
			st.Replicas += ts.Replicas
			st.ReadyReplicas += ts.ReadyReplicas
			st.DesiredReplicas += ts.DesiredReplicas
			st.ReplicaStatuses = append(st.ReplicaStatuses, ts.ReplicaStatuses...)
		}
		st.Traffic = append(st.Traffic, serving.TrafficStatus{
			Tag: t.Tag, Model: t.Model, ModelVersion: ts.ModelVersion, Weight: t.Weight, Primary: t.Primary,
			Replicas: ts.Replicas, ReadyReplicas: ts.ReadyReplicas, DesiredReplicas: ts.DesiredReplicas, Reason: ts.Reason,
		})
	}
	return st
}

// Run loads deployments and recovers their replicas from the store, then
// reconciles until ctx ends. On the way out it drains and stops every
// replica it runs.
func (c *Controller) Run(ctx context.Context) error {
	defer close(c.stopped)
	if err := c.load(ctx); err != nil {
		return err
	}
	tick := c.opts.Clock.NewTicker(c.opts.Tick)
	defer tick.Stop()
	probe := c.opts.Clock.NewTicker(c.opts.ProbeEvery)
	defer probe.Stop()
	again := c.opts.Clock.NewTicker(c.opts.ResolveEvery)
	defer again.Stop()
	// Loaded once the tickers run, so a test's fake clock step after
	// Loaded is never lost.
	close(c.loaded)
	for {
		select {
		case <-ctx.Done():
			c.shutdown()
			return nil
		case <-tick.C():
			c.onTick(ctx)
		case <-probe.C():
			c.probeAll(ctx)
		case <-again.C():
			c.reresolve(ctx, "")
		case <-c.kick:
			wakes, notes, models := c.takeSignals()
			for _, n := range notes {
				c.reload(ctx, n)
			}
			for _, m := range models {
				c.reresolve(ctx, m)
			}
			for _, n := range wakes {
				c.onWake(ctx, n)
			}
			c.flushPoolWakes() // pool.go
		case ev := <-c.events:
			c.handle(ctx, ev)
		case req := <-c.syncs:
			c.reload(ctx, req.name)
			if d := c.deps[req.name]; d != nil && d.resolving {
				// Answer once the route carries what the model resolved
				// to (its registry version), not before.
				if c.parked == nil {
					c.parked = map[string][]chan struct{}{}
				}
				c.parked[req.name] = append(c.parked[req.name], req.done)
				break
			}
			close(req.done)
		}
	}
}

// load reads every deployment and reattaches to the replicas the store knows.
func (c *Controller) load(ctx context.Context) error {
	deps, err := c.store.ListDeployments(ctx)
	if err != nil {
		return fmt.Errorf("control: load deployments: %w", err)
	}
	if err := c.loadPools(ctx); err != nil { // pool.go
		return err
	}
	for _, d := range deps {
		if d.Spec.Pool != nil {
			c.upsertPooled(ctx, d)
			continue
		}
		c.upsertAll(ctx, d)
	}
	handles, err := c.store.ListReplicas(ctx)
	if err != nil {
		return fmt.Errorf("control: load replicas: %w", err)
	}
	for _, h := range handles {
		c.recover(ctx, h)
	}
	for _, d := range c.deps {
		// Keep what runs until the autoscaler has data to judge by.
		d.desired = int32(len(d.replicas))
		d.scale.Desired = d.desired
		c.reconcile(ctx, d)
		c.publish(d)
	}
	return nil
}

// recover reattaches one stored replica, or forgets it when it is gone or its
// deployment no longer exists.
func (c *Controller) recover(ctx context.Context, h replica.Handle) {
	log := c.log.With("deployment", h.Spec.Key(), "replica", h.Spec.ID)
	d := c.deps[h.Spec.Key()]
	err := c.backend.Recover(ctx, h)
	if err != nil {
		if !errors.Is(err, replica.ErrNotFound) {
			log.Warn("cannot recover replica; forgetting it", "err", err)
		} else {
			log.Info("stored replica no longer runs", "err", err)
		}
		c.forgetReplica(ctx, h.Spec.ID)
		return
	}
	if d == nil {
		log.Info("stopping recovered replica of a deleted deployment")
		c.goStop(h)
		c.watch(ctx, h)
		return
	}
	r := &replicaRec{h: h, state: serving.ReplicaStarting, generation: d.generationOf(h.Spec), recovered: true, version: h.Spec.Version}
	d.replicas[h.Spec.ID] = r
	log.Info("recovered replica")
	c.watch(ctx, h)
	c.waitReady(ctx, h)
}

func (c *Controller) forgetReplica(ctx context.Context, id string) {
	if err := c.store.DeleteReplica(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		c.log.Warn("cannot delete replica record", "replica", id, "err", err)
	}
}

// shutdown stops every replica, each given DrainTimeout to finish its work,
// and waits for the goroutines the loop started.
func (c *Controller) shutdown() {
	var wg sync.WaitGroup
	for _, d := range c.deps {
		c.routes.Remove(d.name)
		for _, r := range d.replicas {
			if r.h.Endpoint == "" {
				continue // still starting; its start goroutine stops it
			}
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), c.opts.DrainTimeout)
				defer cancel()
				if err := c.backend.Stop(ctx, r.h); err != nil {
					c.log.Warn("stop replica on shutdown", "replica", r.h.Spec.ID, "err", err)
				}
				c.forgetReplica(ctx, r.h.Spec.ID)
			})
		}
	}
	wg.Wait()
	c.log.Info("control loop stopped; all replicas stopped")
}

// Loaded is closed once Run has loaded every deployment and recovered the
// stored replicas.
func (c *Controller) Loaded() <-chan struct{} { return c.loaded }

// Wait blocks until every goroutine started by Run has ended. Call it after
// Run returns.
func (c *Controller) Wait() { c.wg.Wait() }

// send delivers an event to the loop, or drops it once the loop has ended.
func (c *Controller) send(ev event) {
	select {
	case c.events <- ev:
	case <-c.stopped:
	}
}
