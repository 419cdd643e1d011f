package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/resolve"
	"github.com/ebb-ml/ebb/internal/serving"
)

// event is something a replica goroutine reports to the loop.
type event struct {
	kind       eventKind
	deployment string
	id         string
	handle     replica.Handle
	startup    replica.Startup
	res        resolve.Resolution // evResolved
	seq        int                // evResolved
	exit       replica.Exit
	pool       *poolEvent // evPool (pool_act.go)
	err        error
}

type eventKind int

const (
	evStarted  eventKind = iota // Start returned (err set on failure)
	evReady                     // Ready returned (err set on failure)
	evExited                    // the replica ended
	evProbe                     // a health probe finished (err set on failure)
	evResolved                  // a model resolution finished (err set on failure)
	evPool                      // a pool's background work reported (pool_act.go)
)

// earlyCrash is how long a replica must stay ready for its exit not to count
// as a failed start.
const earlyCrash = 10 * time.Second

// recordedBackend is a backend that must be told once a replica it started
// is recorded in the store (process.Backend: its replicas exit when ebb
// dies before that).
type recordedBackend interface {
	Recorded(replica.Handle) error
}

// startReplica launches one replica of d's current generation.
func (c *Controller) startReplica(ctx context.Context, d *deployment) {
	id := newReplicaID(d.name)
	spec := d.replicaSpec(id)
	d.replicas[id] = &replicaRec{
		h:          replica.Handle{Spec: spec, ScheduledAt: c.opts.Clock.Now()},
		state:      serving.ReplicaStarting,
		generation: d.generation,
		version:    d.run.Version,
	}
	c.log.Info("starting replica", "deployment", d.name, "replica", id)
	c.wg.Go(func() {
		h, err := c.backend.Start(ctx, spec)
		if err == nil {
			if ctx.Err() != nil {
				// The loop is shutting down and will not stop this one.
				stopCtx, cancel := context.WithTimeout(context.Background(), c.opts.DrainTimeout)
				defer cancel()
				_ = c.backend.Stop(stopCtx, h)
				return
			}
			if perr := c.store.PutReplica(ctx, h); perr != nil {
				c.log.Warn("cannot record replica; it will not be recovered after a restart", "replica", id, "err", perr)
			}
			// Recorded or not, this process runs it now: a backend
			// whose replicas exit unless told so (a process backend's
			// gate: ebb died before recording them) is told.
			if g, ok := c.backend.(recordedBackend); ok {
				if gerr := g.Recorded(h); gerr != nil {
					c.log.Warn("could not release the replica; it will exit", "replica", id, "err", gerr)
				}
			}
		}
		c.send(event{kind: evStarted, deployment: d.name, id: id, handle: h, err: err})
	})
}

// watch reports the replica's exit.
func (c *Controller) watch(ctx context.Context, h replica.Handle) {
	c.wg.Go(func() {
		ex, err := c.backend.Wait(ctx, h)
		if err != nil && ctx.Err() != nil {
			return
		}
		c.send(event{kind: evExited, deployment: h.Spec.Key(), id: h.Spec.ID, exit: ex, err: err})
	})
}

// waitReady reports when the replica serves.
func (c *Controller) waitReady(ctx context.Context, h replica.Handle) {
	c.wg.Go(func() {
		readyCtx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
		defer cancel()
		st, err := c.backend.Ready(readyCtx, h)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("replica %s not ready after %s: raise the control loop's start timeout if the model takes longer to load", h.Spec.ID, c.opts.StartTimeout)
		}
		c.send(event{kind: evReady, deployment: h.Spec.Key(), id: h.Spec.ID, startup: st, err: err})
	})
}

// stopReplica unroutes r at once and stops it in the background; the
// replica finishes the requests it has before it exits.
func (c *Controller) stopReplica(d *deployment, r *replicaRec) {
	r.stopping = true
	if r.state == serving.ReplicaReady {
		r.state = serving.ReplicaDraining
	}
	c.log.Info("stopping replica", "deployment", d.name, "replica", r.h.Spec.ID)
	c.stoppingEvent(d.name, r)
	c.publish(d)
	if r.h.Endpoint == "" {
		return // Start has not returned; evStarted will stop it
	}
	c.goStop(r.h)
}

func (c *Controller) goStop(h replica.Handle) {
	c.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.DrainTimeout)
		defer cancel()
		if err := c.backend.Stop(ctx, h); err != nil {
			c.log.Warn("stop replica", "replica", h.Spec.ID, "err", err)
		}
	})
}

// handle applies one event to the loop's state.
func (c *Controller) handle(ctx context.Context, ev event) {
	if ev.kind == evPool {
		c.handlePoolEvent(ev)
		return
	}
	d := c.deps[ev.deployment]
	if ev.kind == evResolved {
		if d == nil {
			for _, done := range c.parked[ev.deployment] {
				close(done)
			}
			delete(c.parked, ev.deployment)
			return
		}
		c.resolved(ctx, d, ev.seq, ev.res, ev.err)
		if !d.resolving {
			for _, done := range c.parked[d.name] {
				close(done)
			}
			delete(c.parked, d.name)
		}
		return
	}
	var r *replicaRec
	if d != nil {
		r = d.replicas[ev.id]
	}
	if r == nil {
		if ev.kind == evExited {
			c.forgetReplica(ctx, ev.id)
		}
		return
	}
	log := c.log.With("deployment", d.name, "replica", ev.id)
	if d.pool != nil && ev.kind == evExited {
		c.poolReplicaExited(d.pool, r, ev.exit) // before it leaves d.replicas
	}
	switch ev.kind {
	case evStarted:
		if ev.err != nil {
			log.Error("replica failed to start", "err", ev.err)
			delete(d.replicas, ev.id)
			c.failed(d, ev.err.Error())
			break
		}
		r.h = ev.handle
		c.startedEvent(d.name, ev.id, r.h.Endpoint)
		c.watch(ctx, r.h)
		if r.stopping {
			c.goStop(r.h)
			break
		}
		c.waitReady(ctx, r.h)
	case evReady:
		if r.exited {
			// It died while starting; Ready says why (e.g. the model
			// does not load), which beats "exited unexpectedly".
			delete(d.replicas, ev.id)
			msg := "replica exited before it was ready"
			if ev.err != nil {
				msg = ev.err.Error()
			}
			log.Error("replica failed to start", "err", msg)
			if !r.stopping {
				c.opts.Metrics.restarted(d.name)
				c.failed(d, msg)
			}
			c.publish(d)
			break
		}
		if r.stopping {
			break
		}
		if ev.err != nil {
			log.Error("replica failed to become ready", "err", ev.err)
			r.state, r.message = serving.ReplicaFailed, ev.err.Error()
			c.stopReplica(d, r)
			c.failed(d, ev.err.Error())
			break
		}
		c.becameReady(d, r, ev.startup)
		log.Info("replica ready", "endpoint", r.h.Endpoint, "coldStart", phaseSummary(r.phases))
		c.readyEvent(d.name, r)
	case evExited:
		c.forgetReplica(ctx, ev.id)
		if r.state == serving.ReplicaStarting && r.h.Endpoint != "" && !r.stopping {
			// Ready is still pending and returns now with the reason;
			// evReady finishes the replica.
			r.exited = true
			break
		}
		delete(d.replicas, ev.id)
		if !r.stopping {
			log.Warn("replica exited unexpectedly", "code", ev.exit.Code, "err", ev.exit.Err)
			c.exitedEvent(d.name, ev.id, ev.exit.Code, ev.exit.Err)
			c.opts.Metrics.restarted(d.name)
			c.crashed(d, r, ev.exit)
		}
		c.publish(d)
	case evProbe:
		if r.state != serving.ReplicaReady || r.stopping {
			break
		}
		if ev.err == nil {
			r.probeFails = 0
			break
		}
		r.probeFails++
		log.Warn("health probe failed", "failures", r.probeFails, "err", ev.err)
		if r.probeFails >= 3 {
			r.message = "failed 3 health probes: " + ev.err.Error()
			c.stopReplica(d, r)
		}
	}
	c.reconcile(ctx, d)
	c.publishStatus(d)
}

// becameReady routes r and records its cold start.
func (c *Controller) becameReady(d *deployment, r *replicaRec, st replica.Startup) {
	now := c.opts.Clock.Now()
	r.state, r.readyAt, r.message = serving.ReplicaReady, now, ""
	routedAt := now
	if r.recovered {
		routedAt = st.ReadyAt // it has served since then, under an earlier ebb
	}
	r.ep = balance.NewEndpoint(r.h.Spec.ID, r.h.Endpoint)
	r.ep.Version = serving.OIPVersion(r.version)
	r.ep.Secret = r.h.Secret
	r.ep.Socket = r.h.Socket
	if len(st.Phases) > 0 {
		// The backend saw finer steps (a pod: scheduled, image pulled,
		// container started, model loaded, ready).
		r.phases = st.Phases
	} else {
		r.phases = []serving.Phase{phase(serving.PhaseProcessStarted, r.h.ScheduledAt, r.h.StartedAt)}
		loadFrom := r.h.StartedAt
		if a := st.Artifact; a != nil {
			r.phases = append(r.phases, a.Phase())
			loadFrom = a.FetchedAt
		}
		r.phases = append(r.phases,
			phase(serving.PhaseModelLoaded, loadFrom, st.ModelLoadedAt),
			phase(serving.PhaseReady, st.ModelLoadedAt, routedAt))
	}
	if !r.recovered {
		c.opts.Metrics.coldStart(r.phases)
		c.traceColdStart(d.name, r) // trace.go
		d.coldStart = 0
		for _, p := range r.phases {
			d.coldStart += p.Duration.Duration
		}
	}
	// Failures are forgiven once a replica stays up (crashloop.go); the
	// deployment serves again at once. A model that no longer resolves
	// stays reported.
	d.failure = d.unresolved
	c.publish(d)
	if r.version != "" && r.generation == d.generation {
		name, version := d.served, r.version
		c.wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.opts.Resolver.Serving(ctx, name, version); err != nil {
				c.log.Warn("cannot record serving history", "deployment", name, "version", version, "err", err)
			}
		})
	}
}

func phase(name string, from, to time.Time) serving.Phase {
	dur := to.Sub(from)
	if from.IsZero() || to.IsZero() || dur < 0 {
		dur = 0
	}
	return serving.Phase{Name: name, At: to, Duration: serving.D(dur)}
}

func phaseSummary(ps []serving.Phase) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += " "
		}
		s += p.Name + "=" + p.Duration.String()
	}
	return s
}

// probeAll health-checks every ready replica in the background.
func (c *Controller) probeAll(ctx context.Context) {
	for _, d := range c.deps {
		for _, r := range d.replicas {
			if r.state != serving.ReplicaReady || r.stopping {
				continue
			}
			h := r.h
			c.wg.Go(func() {
				err := probe(ctx, c.probes, h.Endpoint)
				c.send(event{kind: evProbe, deployment: h.Spec.Key(), id: h.Spec.ID, err: err})
			})
		}
	}
}

func probe(ctx context.Context, hc *http.Client, endpoint string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/v2/health/ready", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body) // lets the connection be reused
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &probeError{code: resp.StatusCode}
	}
	return nil
}

type probeError struct{ code int }

func (e *probeError) Error() string { return "ready probe answered " + http.StatusText(e.code) }
