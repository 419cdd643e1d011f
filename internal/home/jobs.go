package home

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/jobs"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Batch jobs (internal/jobs) run the same way in both homes: a Jobs
// manager, started by the home after its control loop (ebb up) or on the
// leader (the operator), runs every job that is not finished — those
// submitted through /v1/jobs, and those a crash or a change of leader
// left Running, which resume from their checkpoints. Each job's chunks go
// through a Forwarder at batch priority (ebb up: its gateway, in process;
// a cluster: the gateways, through the shared async queue), and its
// replicas come from the deployments of the admin API's store, which the
// control loop runs: a job's own deployment (job-NAME, pinned at the
// planner's count with spec.replicas, deleted at the end) or a floor on
// the deployment it feeds (spec.scaling.minReplicas raised while it runs,
// then restored).

// DefaultJobConcurrency is how many jobs a home runs at once by default.
const DefaultJobConcurrency = 4

// JobsFlags are a home's flags for batch jobs.
type JobsFlags struct {
	// Concurrency bounds the jobs running at once.
	Concurrency int
	// Queue (the operator) is the async queue that carries the jobs'
	// chunks to the gateways: a nats:// or postgres:// URL, as the
	// gateways' --async-store; "" for the operator's own store when it
	// is PostgreSQL (see Forwarder).
	Queue string
	// Payloads (the operator) is where chunks over the queue's inline
	// limit go: the gateways' --async-payloads.
	Payloads string
}

// AddFlags adds --jobs-concurrency, and --jobs-queue in a cluster.
func (o *JobsFlags) AddFlags(f *pflag.FlagSet, cluster bool) {
	f.IntVar(&o.Concurrency, "jobs-concurrency", DefaultJobConcurrency, "most batch jobs (ebb jobs submit) running at once; the others wait, Pending")
	if cluster {
		f.StringVar(&o.Queue, "jobs-queue", "", "async queue that carries batch jobs' chunks to the gateways, which run them at batch priority: the gateways' --async-store (nats:// or postgres://); empty: the operator's PostgreSQL store (--store-dsn), for gateways whose --async-store is that URL; with neither, batch jobs are refused")
		f.StringVar(&o.Payloads, "jobs-payloads", "", "where batch jobs' chunks over 256 KiB go, an artifact store location (s3://bucket/prefix): the gateways' --async-payloads; empty: chunks stay in the queue's store (NATS takes at most 1 MiB a message)")
	}
}

// Options are the manager's options the flags give.
func (o JobsFlags) Options() JobOptions { return JobOptions{Concurrency: o.Concurrency} }

// JobParts are what a home gives its jobs manager.
type JobParts struct {
	// Store keeps the jobs and their checkpoints: the SQL store.
	Store store.JobStore
	// Deployments and Ctl are the admin API's: a job's own deployment is
	// created, pinned and deleted there, and a floor set on the one it
	// feeds, as an admin would.
	Deployments api.Store
	Ctl         api.Controller
	// Forwarder runs a chunk's request through the gateway's chain; nil
	// turns jobs off: they are refused at submit.
	Forwarder Forwarder
	// Storage reads inputs and writes outputs; nil: file paths, and S3
	// with the artifact store's settings from the environment.
	Storage *jobs.Storage
	// Registerer, when set, gets the jobs' metrics.
	Registerer prometheus.Registerer
}

// JobOptions tune a Jobs manager; zero fields take the defaults.
type JobOptions struct {
	// Concurrency bounds the jobs running at once; default
	// DefaultJobConcurrency. A job whose cancel was asked for runs
	// beyond it: it only ends.
	Concurrency int
	// Poll is how often the store is read for jobs submitted elsewhere
	// (another operator replica) and for the metrics; default 5s.
	Poll time.Duration
	// Runner configures each job's runner; its Log is the manager's.
	Runner jobs.Options
}

// Jobs runs batch jobs: see the comment at the top of this file.
type Jobs struct {
	st      store.JobStore
	deps    api.Store
	ctl     api.Controller
	fw      Forwarder
	storage *jobs.Storage
	admit   *jobs.Admission
	opts    JobOptions
	log     *slog.Logger
	wake    chan struct{}
	floors  floors
	metrics *jobMetrics
}

// NewJobs returns the manager; it starts nothing: call Run.
func NewJobs(p JobParts, o JobOptions, log *slog.Logger) *Jobs {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultJobConcurrency
	}
	if o.Poll <= 0 {
		o.Poll = 5 * time.Second
	}
	if o.Runner.Retries == 0 {
		// 1+2+4+8+16 s: a deployment waking, a tenant limit, a gateway
		// that does not know the job's new deployment yet.
		o.Runner.Retries = 5
	}
	o.Runner.Log = log
	storage := p.Storage
	if storage == nil {
		storage = &jobs.Storage{}
	}
	m := &Jobs{st: p.Store, deps: p.Deployments, ctl: p.Ctl, fw: p.Forwarder, storage: storage,
		admit: &jobs.Admission{Storage: storage, Planner: o.Runner.Planner, Clock: o.Runner.Clock},
		opts:  o, log: log, wake: make(chan struct{}, 1), metrics: newJobMetrics()}
	m.admit.GPUs = m
	if p.Registerer != nil {
		p.Registerer.MustRegister(m.metrics)
	}
	return m
}

// Store is the store the manager's jobs are in, for the admin API.
func (m *Jobs) Store() store.JobStore { return m.st }

// Admission checks a job at submit, for the admin API; without a
// Forwarder it refuses every job.
func (m *Jobs) Admission() api.JobAdmitter {
	if m.fw == nil {
		return jobsOff{}
	}
	return m.admit
}

// Submitted tells the manager that a job was stored; it never blocks.
func (m *Jobs) Submitted(string) {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// runnerDone is a runner's end.
type runnerDone struct {
	name string
	err  error
}

// Run runs jobs until ctx ends: at once every job not finished, then
// each one submitted, at most Concurrency at a time, oldest first. When
// ctx ends it stops the runners, which leave their jobs where they are
// for the next Run to resume, and returns nil.
func (m *Jobs) Run(ctx context.Context) error {
	if m.fw == nil {
		m.log.Info(errJobsOff.Error())
		return nil
	}
	running := map[string]context.CancelFunc{}
	failed := map[string]time.Time{} // job → when its runner last failed
	done := make(chan runnerDone)
	defer func() {
		for _, cancel := range running {
			cancel()
		}
		for range running {
			<-done
		}
	}()
	t := time.NewTicker(m.opts.Poll)
	defer t.Stop()
	for {
		m.scan(ctx, running, failed, done)
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		case <-t.C:
		case d := <-done:
			running[d.name]()
			delete(running, d.name)
			delete(failed, d.name)
			if d.err != nil && ctx.Err() == nil {
				m.log.Warn("job stopped; it is tried again", "job", d.name, "err", d.err, "after", m.opts.Poll.String())
				failed[d.name] = time.Now()
			}
		}
	}
}

// scan reads the jobs, publishes them to the metrics and starts those
// that should run; one whose runner failed is tried again a Poll later.
func (m *Jobs) scan(ctx context.Context, running map[string]context.CancelFunc, failed map[string]time.Time, done chan<- runnerDone) {
	all, err := m.st.ListJobs(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("cannot list jobs", "err", err)
		}
		return
	}
	m.metrics.set(all)
	busy := 0
	for _, j := range all {
		if _, ok := running[j.Name]; ok && !j.Status.CancelRequested {
			busy++
		}
	}
	for _, j := range all {
		if serving.JobFinished(j.Status.Phase) {
			delete(failed, j.Name)
			continue
		}
		if _, ok := running[j.Name]; ok {
			continue
		}
		if at, ok := failed[j.Name]; ok && time.Since(at) < m.opts.Poll {
			continue
		}
		if !j.Status.CancelRequested {
			if busy >= m.opts.Concurrency {
				continue
			}
			busy++
		}
		rctx, cancel := context.WithCancel(ctx)
		running[j.Name] = cancel
		go func() { done <- runnerDone{j.Name, m.runJob(rctx, j.Name)} }()
	}
}

// runJob runs one job's runner and, once the job has ended, makes sure
// its replicas are handed back: a job cancelled before it was resumed
// ends without asking for any, and one whose release failed left some.
func (m *Jobs) runJob(ctx context.Context, name string) error {
	sc := &jobScaler{m: m, job: name}
	r := jobs.NewRunner(name, m.st, forwardPredictor{fw: m.fw, tenant: "job:" + name}, sc, m.storage, m.opts.Runner)
	if err := r.Run(ctx); err != nil {
		return err
	}
	j, err := m.st.GetJob(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	dep := j.Spec.Deployment
	if j.Spec.Serving != nil {
		dep = OwnDeployment(name)
	}
	if err := sc.Release(ctx, j, dep); err != nil {
		m.log.Warn("cannot hand back the replicas of a finished job", "job", name, "deployment", dep, "err", err)
	}
	return nil
}

// notify tells the control loop a deployment changed and, where it can
// say, waits until it applied the change, so that the job's next request
// finds the deployment as it asked.
func (m *Jobs) notify(ctx context.Context, name string) {
	s, ok := m.ctl.(api.Syncer)
	if !ok {
		m.ctl.Notify(name)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Sync(sctx, name); err != nil && ctx.Err() == nil {
		m.log.Warn("control loop did not apply a job's change in time; it will", "deployment", name, "err", err)
	}
}
