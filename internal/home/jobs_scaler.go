package home

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// JobEnv is the environment variable that marks a job's own deployment:
// its value is the job's name, so that a deployment of that name someone
// else created is never taken over, nor deleted.
const JobEnv = "EBB_JOB"

// OwnDeployment is the name of the deployment a job runs its replicas in
// when it has its own model (spec.serving).
func OwnDeployment(job string) string { return "job-" + job }

// jobScaler is one job's jobs.Scaler.
type jobScaler struct {
	m   *Jobs
	job string
	own bool // the job runs its own deployment (set by Provision)
}

// Provision implements jobs.Scaler: the deployment the job feeds, which
// must exist, or the job's own, created with no replicas.
func (s *jobScaler) Provision(ctx context.Context, j serving.Job) (string, error) {
	s.own = j.Spec.Serving != nil
	if !s.own {
		if _, err := s.m.deps.GetDeployment(ctx, j.Spec.Deployment); err != nil {
			return "", fmt.Errorf("deployment %q: %w", j.Spec.Deployment, err)
		}
		return j.Spec.Deployment, nil
	}
	name := OwnDeployment(j.Name)
	zero := int32(0)
	d := serving.Deployment{Name: name, Spec: *j.Spec.Serving.DeepCopy()}
	d.Spec.Replicas = &zero
	if d.Spec.Env == nil {
		d.Spec.Env = map[string]string{}
	}
	d.Spec.Env[JobEnv] = j.Name
	d.Spec.Default()
	if err := d.Validate(); err != nil {
		return "", err
	}
	_, err := s.m.deps.CreateDeployment(ctx, d)
	if errors.Is(err, store.ErrExists) {
		var cur serving.Deployment
		if cur, err = s.m.deps.GetDeployment(ctx, name); err == nil && cur.Spec.Env[JobEnv] != j.Name {
			return "", fmt.Errorf("deployment %q exists and is not this job's: delete it, or submit the job under another name", name)
		}
	}
	if err != nil {
		return "", err
	}
	s.m.notify(ctx, name)
	return name, nil
}

// GPUsPerReplica implements jobs.GPUCounter: the GPUs one replica of
// deployment asks for, from its spec in the store.
func (s *jobScaler) GPUsPerReplica(ctx context.Context, deployment string) (int64, error) {
	return s.m.GPUsPerReplica(ctx, deployment)
}

// GPUsPerReplica implements jobs.GPUCounter for the manager's admission.
func (m *Jobs) GPUsPerReplica(ctx context.Context, deployment string) (int64, error) {
	d, err := m.deps.GetDeployment(ctx, deployment)
	if err != nil {
		return 0, err
	}
	return d.Spec.GPUs(), nil
}

// SetReplicas implements jobs.Scaler: the job's own deployment is pinned
// at n (spec.replicas); a deployment it feeds keeps at least n.
func (s *jobScaler) SetReplicas(ctx context.Context, deployment string, n int32) error {
	if !s.own {
		return s.m.setFloor(ctx, s.job, deployment, n)
	}
	_, err := s.m.deps.UpdateDeployment(ctx, deployment, func(d *serving.Deployment) error {
		d.Spec.Replicas = &n
		return nil
	})
	if err != nil {
		return err
	}
	s.m.notify(ctx, deployment)
	return nil
}

// Release implements jobs.Scaler: the job's own deployment is deleted,
// and a deployment it feeds gets its own floor back. Releasing twice is
// no error.
func (s *jobScaler) Release(ctx context.Context, j serving.Job, deployment string) error {
	if j.Spec.Serving == nil {
		return s.m.setFloor(ctx, j.Name, deployment, 0)
	}
	d, err := s.m.deps.GetDeployment(ctx, deployment)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if d.Spec.Env[JobEnv] != j.Name {
		return nil // not the job's: leave it
	}
	if err := s.m.deps.DeleteDeployment(ctx, deployment); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.m.notify(ctx, deployment)
	return nil
}

// floors are the floors jobs hold on the deployments they feed. Several
// jobs may feed one deployment: its floor is the largest they ask for,
// and its own value comes back when the last lets go.
type floors struct {
	mu   sync.Mutex
	deps map[string]*floor
}

// floor is one deployment's.
type floor struct {
	own   int32            // the deployment's own minReplicas
	set   int32            // what the jobs set it to
	holds map[string]int32 // job → replicas asked for
}

// setFloor makes job hold n replicas of deployment (0: none) and writes
// the deployment's floor: the largest hold, or its own value when none
// is left. Each holding job records the own value in its status
// (serving.JobFloor), so that after a crash the job resumes with it, and
// its release restores it.
func (m *Jobs) setFloor(ctx context.Context, job, deployment string, n int32) error {
	fl := &m.floors
	fl.mu.Lock()
	defer fl.mu.Unlock()
	f := fl.deps[deployment]
	if f == nil {
		f = &floor{own: -1, holds: map[string]int32{}}
		// A job resumed after a crash, or released after one, has the
		// deployment's own value in its status.
		j, err := m.st.GetJob(ctx, job)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if rec := j.Status.Floor; rec != nil && rec.Deployment == deployment {
			f.own, f.set = rec.MinReplicas, rec.Set
		} else if n == 0 {
			return nil // nothing held, nothing to give back
		}
	}
	if n > 0 {
		f.holds[job] = n
	} else {
		delete(f.holds, job)
	}
	var own, set int32
	_, err := m.deps.UpdateDeployment(ctx, deployment, func(d *serving.Deployment) error {
		cur := d.Spec.Scaling.MinReplicas
		own = f.own
		if own < 0 || cur != f.set {
			own = cur // first hold, or the owner changed it: theirs
		}
		set = own
		for _, h := range f.holds {
			set = max(set, h)
		}
		set = max(min(set, d.Spec.Scaling.MaxReplicas), own)
		d.Spec.Scaling.MinReplicas = set
		return nil
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Deleted under the jobs: nothing to hold or give back.
		m.forgetFloor(ctx, f, job, deployment)
		if n == 0 {
			return nil
		}
		return err
	case err != nil:
		return err
	}
	f.own, f.set = own, set
	if fl.deps == nil {
		fl.deps = map[string]*floor{}
	}
	fl.deps[deployment] = f
	if len(f.holds) == 0 {
		m.forgetFloor(ctx, f, job, deployment)
	} else {
		rec := &serving.JobFloor{Deployment: deployment, MinReplicas: own, Set: set}
		for holder := range f.holds {
			m.recordFloor(ctx, holder, rec)
		}
		if n == 0 {
			m.recordFloor(ctx, job, nil)
		}
	}
	m.notify(ctx, deployment)
	return nil
}

// forgetFloor drops a deployment's floor and clears the records of job
// and of every job that held it.
func (m *Jobs) forgetFloor(ctx context.Context, f *floor, job, deployment string) {
	delete(m.floors.deps, deployment)
	m.recordFloor(ctx, job, nil)
	for holder := range f.holds {
		m.recordFloor(ctx, holder, nil)
	}
}

// recordFloor writes a job's floor record; nil clears it.
func (m *Jobs) recordFloor(ctx context.Context, job string, rec *serving.JobFloor) {
	_, err := m.st.UpdateJob(ctx, job, func(j *serving.Job) error {
		if rec == nil {
			j.Status.Floor = nil
			return nil
		}
		r := *rec
		j.Status.Floor = &r
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		m.log.Warn("cannot record a job's floor", "job", job, "err", err)
	}
}
