package operator

import (
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/serving"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDecideJob(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC))
	type mjOpt func(*v1alpha1.ModelJob)
	linked := func(mj *v1alpha1.ModelJob) { mj.Finalizers = []string{JobFinalizer} }
	deleting := func(mj *v1alpha1.ModelJob) { mj.DeletionTimestamp = &now }
	phase := func(p string, rows int64) mjOpt {
		return func(mj *v1alpha1.ModelJob) { mj.Status.Phase, mj.Status.RowsDone = p, rows }
	}
	cancelAsked := func(mj *v1alpha1.ModelJob) { mj.Status.CancelRequested = true }
	obj := func(opts ...mjOpt) *v1alpha1.ModelJob {
		mj := &v1alpha1.ModelJob{ObjectMeta: metav1.ObjectMeta{Name: "scores"}}
		for _, o := range opts {
			o(mj)
		}
		return mj
	}
	job := func(p string, rows int64, cancel bool) *serving.Job {
		return &serving.Job{Name: "scores", Status: serving.JobStatus{Phase: p, RowsDone: rows, CancelRequested: cancel}}
	}
	for _, tc := range []struct {
		name string
		mj   *v1alpha1.ModelJob
		j    *serving.Job
		want jobAction
	}{
		{"nothing", nil, nil, jobNone},
		{"submitted through the API", nil, job(serving.JobPending, 0, false), jobMirror},
		{"created by kubectl", obj(), nil, jobSubmit},
		{"finalizer added, not stored yet", obj(linked), nil, jobSubmit},
		{"refused", obj(phase(serving.JobRefused, 0)), nil, jobNone},
		{"refused, its name taken since", obj(phase(serving.JobRefused, 0)), job(serving.JobRunning, 5, false), jobNone},
		{"created under a stored job's name", obj(), job(serving.JobRunning, 5, false), jobTaken},
		{"mirrored, no status yet", obj(linked), job(serving.JobPending, 0, false), jobCopyStatus},
		{"running, status behind", obj(linked, phase(serving.JobRunning, 10)), job(serving.JobRunning, 20, false), jobCopyStatus},
		{"running, status current", obj(linked, phase(serving.JobRunning, 20)), job(serving.JobRunning, 20, false), jobNone},
		{"deleted through the API", obj(linked, phase(serving.JobSucceeded, 20)), nil, jobDeleteObject},
		{"deleting, running", obj(linked, deleting, phase(serving.JobRunning, 20)), job(serving.JobRunning, 20, false), jobCancel},
		{"deleting, cancel asked, status behind", obj(linked, deleting, phase(serving.JobRunning, 20)), job(serving.JobRunning, 25, true), jobCopyStatus},
		{"deleting, cancel asked, status current", obj(linked, deleting, phase(serving.JobRunning, 25), cancelAsked), job(serving.JobRunning, 25, true), jobNone},
		{"deleting, ended", obj(linked, deleting, phase(serving.JobRunning, 25)), job(serving.JobCancelled, 25, true), jobForget},
		{"deleting, finished before", obj(linked, deleting, phase(serving.JobSucceeded, 50)), job(serving.JobSucceeded, 50, false), jobForget},
		{"deleting, record gone", obj(linked, deleting), nil, jobRelease},
		{"deleting, not ours", obj(deleting), job(serving.JobRunning, 5, false), jobNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideJob(tc.mj, tc.j); got != tc.want {
				t.Errorf("decideJob = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSameJobStatus(t *testing.T) {
	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	a := serving.JobStatus{Phase: serving.JobRunning, RowsDone: 10, ETA: &at, Events: []serving.JobEvent{{Time: at, Message: "submitted"}}}
	b := *a.DeepCopy()
	if !sameJobStatus(a, b) {
		t.Error("a status and its copy differ")
	}
	b.Events = append(b.Events, serving.JobEvent{Time: at, Message: "probe"})
	if sameJobStatus(a, b) {
		t.Error("statuses with different events read the same")
	}
}
