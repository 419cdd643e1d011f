package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Predictor sends one chunk, an OIP v2 infer request, to a deployment at
// batch priority and returns the response. The gateway implements it with
// the header Ebb-Priority: batch, so that online requests go first. A
// failed chunk is sent again (Options.Retries) unless its error wraps
// ErrPermanent.
//
// The runner sends its chunks with binary tensor data (the OIP v2 binary
// data extension): req.Body is a JSON header of req.HeaderLength bytes
// (the Inference-Header-Content-Length to send) followed by the inputs'
// raw little-endian data, and the request asks for its outputs as binary
// data too ("binary_data_output": true).
type Predictor interface {
	Infer(ctx context.Context, deployment string, req Message) (Message, error)
}

// Message is the body of an OIP v2 infer request or response: JSON, then,
// when HeaderLength is less than len(Body), binary tensor data.
type Message struct {
	Body []byte
	// HeaderLength is the length of Body's JSON part, the
	// Inference-Header-Content-Length. In a request, 0 means that Body is
	// all JSON. In a response, 0 means unknown (a Forwarder that does not
	// keep the header): the runner finds where the JSON ends itself.
	HeaderLength int
}

// ErrPermanent marks a Predictor's error that sending the chunk again
// cannot mend: the model refused the request as malformed (HTTP 400, 404,
// 422). The job fails at once, naming the chunk.
var ErrPermanent = errors.New("permanent failure")

// Scaler gives a job the replicas its plan asks for; the control loop
// implements it.
type Scaler interface {
	// Provision returns the deployment that serves the job's chunks:
	// spec.deployment as it is, or the job's own (job-NAME), created from
	// spec.serving with no replicas if it does not exist yet. It is
	// idempotent: a job resumed after a crash gets the same deployment.
	Provision(ctx context.Context, job serving.Job) (deployment string, err error)
	// SetReplicas asks for n replicas of deployment for the job, 0 to
	// hand them all back: the job's own deployment is pinned at n; an
	// existing deployment keeps at least n while the job runs, its
	// autoscaler deciding above them for its online traffic.
	SetReplicas(ctx context.Context, deployment string, n int32) error
	// Release ends the job's hold on deployment: the job's own is deleted
	// (back to zero), an existing one returns to its own scaling.
	Release(ctx context.Context, job serving.Job, deployment string) error
}

// GPUCounter is a Scaler that tells the GPUs one replica of a deployment
// it serves a job with asks for (serving.Spec.GPUs), for a job that feeds
// an existing deployment: GPU-hours are counted, and bounded by
// lease.maxGPUHours, in replica-hours × those GPUs. A Scaler without it
// counts no GPU-hours for such a job.
type GPUCounter interface {
	GPUsPerReplica(ctx context.Context, deployment string) (int64, error)
}

// gpusPerReplica returns the GPUs per replica of the deployment that
// serves job: its own spec's, or the fed deployment's as sc tells.
func gpusPerReplica(ctx context.Context, sc Scaler, job serving.Job, deployment string) (int64, error) {
	if job.Spec.Serving != nil {
		return job.Spec.Serving.GPUs(), nil
	}
	if c, ok := sc.(GPUCounter); ok {
		return c.GPUsPerReplica(ctx, deployment)
	}
	return 0, nil
}

// Store is what a Runner keeps in the store: the job's status and its
// chunks' checkpoints (store.JobStore has it).
type Store interface {
	GetJob(ctx context.Context, name string) (serving.Job, error)
	UpdateJob(ctx context.Context, name string, fn func(*serving.Job) error) (serving.Job, error)
	PutJobChunk(ctx context.Context, c store.JobChunk) error
	ListJobChunks(ctx context.Context, job string) ([]store.JobChunk, error)
}

// readAhead is how many chunks the input is read ahead of the requests.
const readAhead = 8

// Clock tells the time.
type Clock interface{ Now() time.Time }

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// Options configure a Runner; zero fields take the defaults.
type Options struct {
	Planner Planner
	Clock   Clock
	Log     *slog.Logger
	// PerReplica is how many chunks are in flight per replica; default 2.
	PerReplica int
	// ProbeChunks is how many chunks the probe sends, one at a time, on
	// one replica, before the pool is sized: the first pays the cold
	// start, the last is measured. Default 3.
	ProbeChunks int
	// StatusEvery is how often the runner writes progress and checks the
	// budget, the windows and a cancel; default 2s.
	StatusEvery time.Duration
	// ReplanEvery is how often the plan is checked against the measured
	// rate; default 30s.
	ReplanEvery time.Duration
	// Retries is how often a failed chunk is sent again before the job
	// fails, after RetryBackoff, doubling; defaults 3 and 1s.
	Retries      int
	RetryBackoff time.Duration
	// CommitChunks is how many finished chunks are checkpointed together,
	// their parts synced once (commit.go); CommitDelay how long the first
	// of a group waits at most for the others. Defaults 16 and 100ms.
	CommitChunks int
	CommitDelay  time.Duration
}

func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = wallClock{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.PerReplica <= 0 {
		o.PerReplica = 2
	}
	if o.ProbeChunks <= 0 {
		o.ProbeChunks = 3
	}
	if o.StatusEvery <= 0 {
		o.StatusEvery = 2 * time.Second
	}
	if o.ReplanEvery <= 0 {
		o.ReplanEvery = 30 * time.Second
	}
	if o.Retries == 0 {
		o.Retries = 3
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = time.Second
	}
	if o.CommitChunks <= 0 {
		o.CommitChunks = 16
	}
	if o.CommitDelay <= 0 {
		o.CommitDelay = 100 * time.Millisecond
	}
	return o
}

// Runner runs one job to its end: probe, plan, chunks through the
// Predictor, output, and back to zero replicas. See the package doc for
// its contract.
type Runner struct {
	name    string
	st      Store
	pred    Predictor
	sc      Scaler
	storage *Storage
	opts    Options
}

// NewRunner returns a Runner of the named job. It starts nothing: call
// Run.
func NewRunner(name string, st Store, pred Predictor, sc Scaler, storage *Storage, opts Options) *Runner {
	return &Runner{name: name, st: st, pred: pred, sc: sc, storage: storage, opts: opts.withDefaults()}
}

// Run runs the job until it reaches a phase it never leaves (Succeeded,
// Failed, Cancelled, Refused), and returns nil then, or until ctx ends,
// and returns ctx's error leaving the job where it was, as a crash would:
// a later Run resumes it from its checkpoints. Other errors (the store
// unreachable at the start) leave the job as it was too.
func (r *Runner) Run(ctx context.Context) error {
	job, err := r.st.GetJob(ctx, r.name)
	if err != nil {
		return err
	}
	if serving.JobFinished(job.Status.Phase) {
		return nil
	}
	x := &run{r: r, job: job, status: job.Status, log: r.opts.Log.With("job", r.name)}
	return x.run(ctx)
}

// run is one Run of a job. Its fields belong to the goroutine of Run but
// for those under mu, which the workers share.
type run struct {
	r      *Runner
	job    serving.Job
	status serving.JobStatus
	log    *slog.Logger

	in         *input
	out        loc
	parts      *partsWriter       // this Run's segment of the parts log
	frames     map[string]frameAt // chunk id → its part in the log
	deployment string
	gpus       int64 // per replica of deployment
	done       []bool
	chunksDone int64
	replicas   int32 // asked of the Scaler
	accounted  time.Time
	samples    []sample // recent completions, for the rate
	paused     bool     // outside the lease's windows

	mu      sync.Mutex
	limit   int          // workers that may run
	running map[int]bool // worker slots running
	resized chan struct{}
	wg      sync.WaitGroup
}

// sample is one completed chunk.
type sample struct {
	at   time.Time
	rows int64
}

// task is one chunk to send.
type task struct {
	index int64
	id    string
	rows  int64 // input rows, bad ones included
	batch *batch
	req   Message
}

// result is a chunk done (checkpointed), or failed.
type result struct {
	t   *task
	dur time.Duration
	at  frameAt // its part
	err error
}

func (x *run) now() time.Time { return x.r.opts.Clock.Now() }

func (x *run) event(format string, args ...any) {
	x.status.AddEvent(x.now(), format, args...)
	x.log.Info(fmt.Sprintf(format, args...))
}

func (x *run) run(ctx context.Context) error {
	spec := x.job.Spec
	now := x.now()
	x.accounted = now
	if x.status.StartedAt == nil {
		x.status.StartedAt = &now
	}
	if x.status.CancelRequested {
		return x.end(ctx, serving.JobCancelled, "cancelled before it started")
	}
	in, err := openInput(ctx, x.r.storage, spec)
	if err == nil {
		x.in = in
		x.out, err = parseLoc(spec.Output.URI)
	}
	if err == nil {
		err = x.r.storage.checkWritable(ctx, x.out)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return x.end(ctx, serving.JobFailed, err.Error())
	}
	x.parts = x.r.storage.partsWriter(x.out)
	defer x.parts.close()
	if err := x.loadCheckpoints(ctx); err != nil {
		return err
	}
	if x.chunksDone == in.chunks() {
		return x.finish(ctx)
	}
	if x.deployment, err = x.r.sc.Provision(ctx, x.job); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return x.end(ctx, serving.JobFailed, fmt.Sprintf("cannot get a deployment to serve the job: %v", err))
	}
	x.status.Deployment = x.deployment
	if x.gpus, err = gpusPerReplica(ctx, x.r.sc, x.job, x.deployment); err != nil {
		return x.failOrStop(ctx, fmt.Errorf("cannot read the GPUs of deployment %q: %w", x.deployment, err))
	}
	if err := x.waitOpen(ctx); err != nil || serving.JobFinished(x.status.Phase) {
		return err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The producer reads ahead of the workers by readAhead chunks: it
	// parses the input while the first replica starts, and while the
	// replicas compute.
	tasks, errc := make(chan *task, readAhead), make(chan error, 1)
	x.wg.Go(func() { x.produce(runCtx, tasks, errc) })
	stop := func() {
		cancel()
		x.wg.Wait()
	}
	if x.status.Plan == nil {
		if err := x.probeAndPlan(ctx, runCtx, tasks, errc); err != nil || serving.JobFinished(x.status.Phase) {
			stop()
			return err
		}
		if x.chunksDone == in.chunks() { // the probe did them all
			stop()
			return x.finish(ctx)
		}
	}
	return x.loop(ctx, runCtx, stop, tasks, errc)
}

// loadCheckpoints marks the chunks done whose checkpoint the store has
// and whose part is whole in the parts log: both, since a part is synced
// before its checkpoint is recorded and a checkpoint alone (its part
// lost) is no result.
func (x *run) loadCheckpoints(ctx context.Context) error {
	recorded, err := x.r.st.ListJobChunks(ctx, x.job.Name)
	if err != nil {
		return err
	}
	if x.frames, err = x.r.storage.scanParts(ctx, x.out); err != nil {
		return err
	}
	byID := make(map[string]store.JobChunk, len(recorded))
	for _, c := range recorded {
		byID[c.ID] = c
	}
	n := x.in.chunks()
	x.done = make([]bool, n)
	x.chunksDone, x.status.RowsDone, x.status.RowsSkipped = 0, 0, 0
	for i := range n {
		id := x.in.chunkID(i)
		_, whole := x.frames[id]
		if c, ok := byID[id]; ok && whole {
			x.done[i] = true
			x.chunksDone++
			x.status.RowsDone += c.Rows
			x.status.RowsSkipped += c.Skipped
		}
	}
	x.status.RowsTotal, x.status.ChunksTotal, x.status.ChunksDone = x.in.rows, n, x.chunksDone
	if x.chunksDone > 0 {
		x.event("resumed: %d of %d chunks (%d rows) were done", x.chunksDone, n, x.status.RowsDone)
	}
	return nil
}

// probeAndPlan sends the first chunks one at a time on one replica,
// measures the rate of the last, and sizes the pool; a job that cannot
// fit its lease is refused now, before more replicas start.
func (x *run) probeAndPlan(ctx, runCtx context.Context, tasks <-chan *task, errc <-chan error) error {
	x.status.Phase = serving.JobPlanning
	x.event("probing the rate with 1 replica of %s", x.deployment)
	if err := x.setReplicas(ctx, 1); err != nil {
		return x.failOrStop(ctx, fmt.Errorf("cannot start a replica: %w", err))
	}
	x.writeStatus(ctx)
	var rate float64
	for k := 0; k < x.r.opts.ProbeChunks; k++ {
		var t *task
		var ok bool
		select {
		case t, ok = <-tasks:
		case err := <-errc:
			return x.failOrStop(ctx, err)
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			select { // the producer reports a failure before it closes tasks
			case err := <-errc:
				return x.failOrStop(ctx, err)
			default:
			}
			break
		}
		res := x.probeChunk(runCtx, t)
		if res.err != nil {
			return x.failOrStop(ctx, res.err)
		}
		x.record(res)
		if good := t.batch.rows(); good > 0 {
			rate = float64(good) / max(res.dur, time.Millisecond).Seconds()
		}
	}
	left := x.in.rows - x.status.RowsDone
	if left == 0 {
		return nil
	}
	if rate == 0 {
		rate = x.job.Spec.RowsPerSecond
	}
	if rate == 0 {
		return x.end(ctx, serving.JobFailed, "the probe measured no rate: every row of its chunks was bad")
	}
	now := x.now()
	x.account(now)
	plan, err := x.r.opts.Planner.Plan(Situation{Now: now, Deadline: x.job.Spec.Deadline, RowsLeft: left,
		RowsPerSecondPerReplica: rate, Lease: x.job.Spec.Lease, UsedReplicaHours: x.status.ReplicaHours,
		GPUsPerReplica: x.gpus, UsedGPUHours: x.status.GPUHours})
	if refusal, ok := errors.AsType[*serving.JobRefusal](err); ok {
		x.status.Refusal = refusal
		return x.end(ctx, serving.JobRefused, refusal.Error())
	}
	if err != nil {
		return x.end(ctx, serving.JobFailed, err.Error())
	}
	x.status.Plan = &plan
	x.event("probe: %.4g rows/s per replica; planned %d replicas, finishing %s, %.2f replica-hours",
		rate, plan.Replicas, plan.Finish.UTC().Format(time.RFC3339), plan.ReplicaHours)
	return nil
}

// failOrStop fails the job with err, unless ctx ended (a stop, not a
// failure).
func (x *run) failOrStop(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return x.end(ctx, serving.JobFailed, err.Error())
}

// setReplicas asks the Scaler for n replicas, counting the replica-hours
// of the count before.
func (x *run) setReplicas(ctx context.Context, n int32) error {
	if n == x.replicas {
		return nil
	}
	x.account(x.now())
	if err := x.r.sc.SetReplicas(ctx, x.deployment, n); err != nil {
		return err
	}
	x.replicas, x.status.Replicas = n, n
	return nil
}

// account adds the replica-hours held since the last count: what the job
// asked for, from when it asked, which is what a lease pays for.
func (x *run) account(now time.Time) {
	if d := now.Sub(x.accounted); d > 0 {
		x.status.ReplicaHours += float64(x.replicas) * d.Hours()
		x.status.GPUHours += float64(x.replicas) * float64(x.gpus) * d.Hours()
	}
	x.accounted = now
}

// writeStatus writes the status and reports whether the job's owner has
// asked to cancel it. A store that fails is logged and tried again at
// the next step: the checkpoints do not depend on it.
func (x *run) writeStatus(ctx context.Context) (cancel bool) {
	_, err := x.r.st.UpdateJob(ctx, x.job.Name, func(j *serving.Job) error {
		cancel = j.Status.CancelRequested
		s := x.status
		s.CancelRequested = cancel
		s.Floor = j.Status.Floor // the Scaler's to write
		j.Status = s
		return nil
	})
	if err != nil && ctx.Err() == nil {
		x.log.Warn("cannot write the job's status", "err", err)
		return errors.Is(err, store.ErrNotFound) // deleted: stop as if cancelled
	}
	return cancel
}

// end puts the job in a final phase: replicas handed back, parts removed,
// status written.
func (x *run) end(ctx context.Context, phase, msg string) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	now := x.now()
	if x.deployment != "" {
		if err := x.setReplicas(ctx, 0); err != nil {
			x.log.Warn("cannot scale the job's replicas to zero", "err", err)
		}
		if err := x.r.sc.Release(ctx, x.job, x.deployment); err != nil {
			x.log.Warn("cannot release the job's deployment", "deployment", x.deployment, "err", err)
		}
	}
	x.account(now)
	if x.out.uri != "" {
		if x.parts != nil {
			x.parts.close()
		}
		if err := x.r.storage.removeParts(ctx, x.out); err != nil {
			x.log.Warn("cannot remove the job's parts", "err", err)
		}
	}
	x.status.Phase, x.status.Message, x.status.FinishedAt = phase, msg, &now
	x.status.Replicas, x.status.ETA = 0, nil
	x.event("%s: %s", phase, msg)
	x.writeStatus(ctx)
	return ctx.Err()
}

// finish writes the output from every chunk's part and ends the job.
func (x *run) finish(ctx context.Context) error {
	if err := x.setReplicas(ctx, 0); err != nil {
		x.log.Warn("cannot scale the job's replicas to zero", "err", err)
	}
	x.status.Message = "writing the output"
	x.writeStatus(ctx)
	ids := make([]string, x.in.chunks())
	for i := range ids {
		ids[i] = x.in.chunkID(int64(i))
	}
	if err := x.r.storage.assemble(ctx, x.out, x.job.Spec.Output.Format, ids, x.frames); err != nil {
		return x.failOrStop(ctx, fmt.Errorf("writing the output %s: %w", x.out.uri, err))
	}
	written := x.status.RowsDone - x.status.RowsSkipped
	msg := fmt.Sprintf("%d rows written to %s", written, x.out.uri)
	if x.status.RowsSkipped > 0 {
		msg += fmt.Sprintf(" (%d bad rows skipped)", x.status.RowsSkipped)
	}
	return x.end(ctx, serving.JobSucceeded, msg)
}

// sleep waits d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
