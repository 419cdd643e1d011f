package operator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// Batch jobs in a cluster live in the job store (the operator's SQL
// store), where the jobs manager the leader runs (home.Jobs) finds and
// runs them, whoever submitted them. JobSync keeps the namespace's
// ModelJobs and that store the same, both ways, so that kubectl and the
// admin API see one set of jobs:
//
//   - a ModelJob that kubectl created is checked as POST /v1/jobs checks
//     a job (Check: the spec, the model or deployment, the input, the
//     output and the lease); a job at fault is not stored, and its
//     ModelJob shows phase Refused with the message the API would give
//     (and status.refusal with the planner's numbers); a job that passes
//     is stored, and its ModelJob gets JobFinalizer first;
//   - a job submitted through the API gets its ModelJob (with
//     JobFinalizer), created by the operator;
//   - every pass, the status of each job is copied to its ModelJob when
//     it changed (the runner writes it every two seconds);
//   - deleting a ModelJob asks its job to stop as `ebb jobs cancel` does,
//     waits until it has ended (handing its replicas back), then deletes
//     its record and checkpoints, and lets the ModelJob go;
//   - deleting a job through the API (a finished one) deletes its
//     ModelJob.
//
// The finalizer marks a ModelJob whose job was stored (or is being
// stored): it is added before the job is stored, so that a ModelJob
// deleted at that moment still takes its job along. A ModelJob without
// it is either new (no status yet: it is submitted) or was refused (it
// is left as it is: its spec cannot change, so delete it and create
// another). Only the leader runs JobSync (Operator.RunOnLeader), one pass
// at a time: nothing else writes ModelJobs.

// JobFinalizer keeps a ModelJob until its job's record is gone from the
// job store.
const JobFinalizer = "serving.ebb.dev/job"

// DefaultJobSyncEvery is how often JobSync compares the ModelJobs with
// the job store by default.
const DefaultJobSyncEvery = 2 * time.Second

// JobSyncParts are what a JobSync works with.
type JobSyncParts struct {
	// Reader reads ModelJobs from the API server, not a cache: a pass
	// must see what the previous one wrote (the manager's APIReader).
	Reader client.Reader
	// Client writes ModelJobs and their status.
	Client client.Client
	// Namespace is the namespace whose ModelJobs are synced.
	Namespace string
	// Store is the job store the jobs manager runs jobs from.
	Store store.JobStore
	// Check checks a job before it is stored, as POST /v1/jobs does
	// (api.Handler.CheckJob with the jobs manager's admission): it
	// defaults the spec and may fill the status (rows, plan). Required.
	Check func(ctx context.Context, j *serving.Job, now time.Time) error
	// Rejected reports whether Check's error refuses the job for what it
	// is (the API would answer 4xx), rather than a check that could not
	// be made (tried again next pass); default api.JobRejected.
	Rejected func(error) bool
	// Submitted, when set, is told the name of each job stored or asked
	// to stop, so the jobs manager acts at once (home.Jobs.Submitted).
	Submitted func(name string)
}

// JobSyncOptions tune a JobSync; zero fields take the defaults.
type JobSyncOptions struct {
	// Every is how often a pass runs; default DefaultJobSyncEvery.
	Every time.Duration
	// Clock drives the passes and stamps refusals; default real.
	Clock clock.WithTicker
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// JobSync syncs the ModelJobs of a namespace with the job store, as the
// comment at the top of this file says. Run it on the leader only.
type JobSync struct {
	p     JobSyncParts
	every time.Duration
	clock clock.WithTicker
	log   *slog.Logger
	// failed is the latest error of each ModelJob that could not be
	// written, logged once until it changes.
	failed map[string]string
}

// NewJobSync returns a JobSync; it starts nothing: call Run.
func NewJobSync(p JobSyncParts, o JobSyncOptions) (*JobSync, error) {
	if p.Reader == nil || p.Client == nil || p.Store == nil || p.Check == nil || p.Namespace == "" {
		return nil, errors.New("operator: a JobSync needs a Kubernetes client, a namespace, a job store and the API's job check")
	}
	if p.Rejected == nil {
		p.Rejected = api.JobRejected
	}
	if o.Every <= 0 {
		o.Every = DefaultJobSyncEvery
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &JobSync{p: p, every: o.Every, clock: o.Clock, log: o.Logger, failed: map[string]string{}}, nil
}

// Run syncs every Every until ctx ends, then returns nil.
func (s *JobSync) Run(ctx context.Context) error {
	t := s.clock.NewTicker(s.every)
	defer t.Stop()
	for {
		if err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			s.warn("", "cannot sync ModelJobs with the job store; trying again", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
	}
}

// Sync makes one pass: it reads every ModelJob and every job, and
// applies what decideJob says to each name. An error reading either
// ends the pass; an error acting on one job is logged and the others go
// on (the next pass tries again).
func (s *JobSync) Sync(ctx context.Context) error {
	var list v1alpha1.ModelJobList
	if err := s.p.Reader.List(ctx, &list, client.InNamespace(s.p.Namespace)); err != nil {
		return s.kubeErr(err, "list", "")
	}
	jobs, err := s.p.Store.ListJobs(ctx)
	if err != nil {
		return fmt.Errorf("list jobs: %w", err)
	}
	delete(s.failed, "")
	objs := make(map[string]*v1alpha1.ModelJob, len(list.Items))
	for i := range list.Items {
		objs[list.Items[i].Name] = &list.Items[i]
	}
	stored := make(map[string]*serving.Job, len(jobs))
	for i := range jobs {
		stored[jobs[i].Name] = &jobs[i]
	}
	names := make([]string, 0, len(objs)+len(stored))
	for n := range objs {
		names = append(names, n)
	}
	for n := range stored {
		if objs[n] == nil {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for n := range s.failed {
		if objs[n] == nil && stored[n] == nil {
			delete(s.failed, n)
		}
	}
	for _, n := range names {
		if ctx.Err() != nil {
			return nil
		}
		act := decideJob(objs[n], stored[n])
		if act == jobNone {
			continue
		}
		if err := s.apply(ctx, act, objs[n], stored[n]); err != nil {
			if ctx.Err() == nil {
				s.warn(n, "cannot sync a ModelJob with its job; trying again", err, "action", act.String())
			}
			continue
		}
		delete(s.failed, n)
	}
	return nil
}

// apply carries out act for the ModelJob mj and the stored job j.
func (s *JobSync) apply(ctx context.Context, act jobAction, mj *v1alpha1.ModelJob, j *serving.Job) error {
	switch act {
	case jobSubmit:
		return s.submit(ctx, mj)
	case jobTaken:
		return s.refuse(ctx, mj, fmt.Errorf("a job named %q exists already (submitted through the admin API, ebb jobs submit): give the ModelJob another name, or delete that job (ebb jobs delete %s, once it has ended) and create the ModelJob again", mj.Name, mj.Name), nil)
	case jobMirror:
		return s.mirror(ctx, j)
	case jobCopyStatus:
		return s.copyStatus(ctx, mj, j)
	case jobCancel:
		return s.cancel(ctx, j.Name)
	case jobForget:
		if err := s.p.Store.DeleteJob(ctx, j.Name); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete job %s: %w", j.Name, err)
		}
		s.log.Info("job deleted with its ModelJob", "job", j.Name, "phase", j.Status.Phase)
		return s.release(ctx, mj)
	case jobRelease:
		return s.release(ctx, mj)
	case jobDeleteObject:
		// The next pass lets it go (jobRelease).
		if err := s.p.Client.Delete(ctx, mj, client.Preconditions{UID: &mj.UID}); err != nil && !apierrors.IsNotFound(err) {
			return s.kubeErr(err, "delete", mj.Name)
		}
		s.log.Info("ModelJob deleted: its job was deleted through the admin API", "job", mj.Name)
		return nil
	}
	return nil
}

// submit checks the job of a new ModelJob as the API would, and stores
// it, or shows why it is refused.
func (s *JobSync) submit(ctx context.Context, mj *v1alpha1.ModelJob) error {
	now := s.clock.Now()
	j := serving.Job{Name: mj.Name, Spec: *mj.Spec.JobSpec.DeepCopy(), Status: serving.JobStatus{Phase: serving.JobPending}}
	if err := s.p.Check(ctx, &j, now); err != nil {
		if !s.p.Rejected(err) {
			return fmt.Errorf("check job %s: %w", mj.Name, err)
		}
		var refusal *serving.JobRefusal
		if r, ok := errors.AsType[*serving.JobRefusal](err); ok {
			refusal = r
		}
		return s.refuse(ctx, mj, err, refusal)
	}
	if !controllerutil.ContainsFinalizer(mj, JobFinalizer) {
		controllerutil.AddFinalizer(mj, JobFinalizer)
		if err := s.p.Client.Update(ctx, mj); err != nil {
			return s.kubeErr(err, "add the finalizer of", mj.Name)
		}
	}
	j.Status.AddEvent(now, "submitted (ModelJob %s/%s)", mj.Namespace, mj.Name)
	created, err := s.p.Store.CreateJob(ctx, j)
	if err != nil {
		// ErrExists: one of the same name was submitted through the
		// API in the meantime; the next pass sees it and says so.
		return fmt.Errorf("store job %s: %w", mj.Name, err)
	}
	s.log.Info("job submitted from its ModelJob", "job", mj.Name)
	if s.p.Submitted != nil {
		s.p.Submitted(mj.Name)
	}
	return s.copyStatus(ctx, mj, &created)
}

// refuse shows on mj that its job is not stored, and why: phase
// Refused, the message the API would answer, the refusal's numbers.
func (s *JobSync) refuse(ctx context.Context, mj *v1alpha1.ModelJob, why error, refusal *serving.JobRefusal) error {
	now := s.clock.Now()
	st := serving.JobStatus{Phase: serving.JobRefused, Message: why.Error(), Refusal: refusal, FinishedAt: &now}
	st.AddEvent(now, "refused: %s", why.Error())
	if controllerutil.ContainsFinalizer(mj, JobFinalizer) {
		controllerutil.RemoveFinalizer(mj, JobFinalizer)
		if err := s.p.Client.Update(ctx, mj); err != nil {
			return s.kubeErr(err, "remove the finalizer of", mj.Name)
		}
	}
	mj.Status.JobStatus = st
	if err := s.p.Client.Status().Update(ctx, mj); err != nil {
		return s.kubeErr(err, "write the status of", mj.Name)
	}
	s.log.Info("ModelJob refused", "job", mj.Name, "why", why.Error())
	return nil
}

// mirror creates the ModelJob of a job submitted through the API.
func (s *JobSync) mirror(ctx context.Context, j *serving.Job) error {
	mj := &v1alpha1.ModelJob{
		ObjectMeta: metav1.ObjectMeta{Name: j.Name, Namespace: s.p.Namespace, Finalizers: []string{JobFinalizer}},
		Spec:       v1alpha1.ModelJobSpec{JobSpec: *j.Spec.DeepCopy()},
	}
	if err := s.p.Client.Create(ctx, mj); err != nil {
		return s.kubeErr(err, "create", j.Name)
	}
	s.log.Info("ModelJob created for a job submitted through the admin API", "job", j.Name)
	return s.copyStatus(ctx, mj, j)
}

// copyStatus writes j's status to mj.
func (s *JobSync) copyStatus(ctx context.Context, mj *v1alpha1.ModelJob, j *serving.Job) error {
	mj.Status.JobStatus = *j.Status.DeepCopy()
	if err := s.p.Client.Status().Update(ctx, mj); err != nil {
		return s.kubeErr(err, "write the status of", mj.Name)
	}
	return nil
}

// cancel asks the named job to stop, as `ebb jobs cancel` does.
func (s *JobSync) cancel(ctx context.Context, name string) error {
	_, err := s.p.Store.UpdateJob(ctx, name, func(j *serving.Job) error {
		j.RequestCancel(s.clock.Now(), "cancel requested: its ModelJob is being deleted")
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("cancel job %s: %w", name, err)
	}
	s.log.Info("job cancel requested: its ModelJob is being deleted", "job", name)
	if s.p.Submitted != nil {
		s.p.Submitted(name)
	}
	return nil
}

// release removes JobFinalizer from mj.
func (s *JobSync) release(ctx context.Context, mj *v1alpha1.ModelJob) error {
	if !controllerutil.ContainsFinalizer(mj, JobFinalizer) {
		return nil
	}
	controllerutil.RemoveFinalizer(mj, JobFinalizer)
	if err := s.p.Client.Update(ctx, mj); err != nil && !apierrors.IsNotFound(err) {
		return s.kubeErr(err, "remove the finalizer of", mj.Name)
	}
	return nil
}

// warn logs err once for name until it changes; name "" is the pass.
func (s *JobSync) warn(name, msg string, err error, args ...any) {
	if s.failed[name] == err.Error() {
		return
	}
	s.failed[name] = err.Error()
	if name != "" {
		args = append(args, "job", name)
	}
	s.log.Warn(msg, append(args, "err", err)...)
}

// kubeErr says what went wrong with the API server, and what to do.
func (s *JobSync) kubeErr(err error, op, name string) error {
	what := fmt.Sprintf("ModelJob %s/%s", s.p.Namespace, name)
	if name == "" {
		what = "ModelJobs in " + s.p.Namespace
	}
	switch {
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s %s: the Kubernetes API server refused the operator's credentials (check its RBAC for modeljobs and modeljobs/status): %w", op, what, err)
	case meta.IsNoMatchError(err):
		return fmt.Errorf("%s %s: the cluster has no ModelJob CRD (CRDs are not upgraded with the chart): apply it with kubectl apply --server-side -f deploy/crds/serving.ebb.dev_modeljobs.yaml: %w", op, what, err)
	}
	return fmt.Errorf("%s %s: %w", op, what, err)
}

// jobAction is what a pass does for one name.
type jobAction int

const (
	jobNone         jobAction = iota
	jobSubmit                 // check the ModelJob's job, store it or refuse it
	jobTaken                  // refuse a new ModelJob: its name is a stored job's
	jobMirror                 // create the ModelJob of a job submitted through the API
	jobCopyStatus             // write the job's status to its ModelJob
	jobCancel                 // ask the job of a deleted ModelJob to stop
	jobForget                 // delete the ended job of a deleted ModelJob, let it go
	jobRelease                // let a deleted ModelJob go: its job is gone
	jobDeleteObject           // delete the ModelJob of a job deleted through the API
)

func (a jobAction) String() string {
	return [...]string{"none", "submit", "taken", "mirror", "copy status", "cancel", "forget", "release", "delete ModelJob"}[a]
}

// decideJob says what to do for one name, from its ModelJob (nil for
// none) and its stored job (nil for none). It is pure.
func decideJob(mj *v1alpha1.ModelJob, j *serving.Job) jobAction {
	if mj == nil {
		if j == nil {
			return jobNone
		}
		return jobMirror
	}
	linked := controllerutil.ContainsFinalizer(mj, JobFinalizer)
	if !mj.DeletionTimestamp.IsZero() {
		switch {
		case !linked:
			return jobNone
		case j == nil:
			return jobRelease
		case serving.JobFinished(j.Status.Phase):
			return jobForget
		case !j.Status.CancelRequested:
			return jobCancel
		case !sameJobStatus(mj.Status.JobStatus, j.Status):
			return jobCopyStatus
		}
		return jobNone
	}
	submitted := mj.Status.Phase != ""
	switch {
	case !linked && submitted:
		// Refused: its spec cannot change, so nothing will.
		return jobNone
	case !linked && j != nil:
		return jobTaken
	case j == nil && submitted:
		return jobDeleteObject
	case j == nil:
		return jobSubmit
	case !sameJobStatus(mj.Status.JobStatus, j.Status):
		return jobCopyStatus
	}
	return jobNone
}

// sameJobStatus reports whether a and b read the same.
func sameJobStatus(a, b serving.JobStatus) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}
