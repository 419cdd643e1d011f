package api

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Batch inference jobs (serving.Job), mounted by MountJobs:
//
//	GET    /v1/jobs               every job, oldest first (JobList)
//	POST   /v1/jobs               submit one (serving.Job) → 201
//	GET    /v1/jobs/{name}        one, with its progress
//	POST   /v1/jobs/{name}/cancel ask it to stop → 200, the job
//	GET    /v1/jobs/{name}/logs   its latest events, as text
//	DELETE /v1/jobs/{name}        a finished job and its checkpoints → 204
//
// A submit is refused before anything is stored or started: 400
// job/invalid lists every problem of the spec (a deadline in the past
// included); 422 job/input says what is wrong with the input, the output,
// the deployment it names or the mapping against that deployment's
// inputs (naming the column and the tensor); 422 job/refused says that
// the lease cannot fit the deadline, and carries the numbers in
// error.refusal (serving.JobRefusal) as its message does. Writes need
// scope deploy, and exec for a job whose own deployment runs code.

// JobList is the body of GET /v1/jobs.
type JobList struct {
	Items []serving.Job `json:"items"`
}

// JobAdmitter checks a job before it is stored (jobs.Admission): it may
// fill the job's status (rows, plan), and returns a *serving.JobRefusal
// when the lease cannot fit, or another error saying what is wrong with
// the job's input or output.
type JobAdmitter interface {
	Admit(ctx context.Context, j *serving.Job) error
}

// Error codes of the job routes.
const (
	codeJobNotFound = "job/not_found"
	codeJobExists   = "job/exists"
	codeJobInvalid  = "job/invalid"
	codeJobInput    = "job/input"
	codeJobRefused  = "job/refused"
	codeJobFinished = "job/finished"
	codeJobRunning  = "job/running"
)

// jobBody is the request body of a submit. The output-only fields are
// accepted and ignored, so that what GET returns can be sent again.
type jobBody struct {
	Name       string          `json:"name"`
	Spec       serving.JobSpec `json:"spec"`
	Status     json.RawMessage `json:"status,omitempty"`
	Generation json.RawMessage `json:"generation,omitempty"`
	CreatedAt  json.RawMessage `json:"createdAt,omitempty"`
	UpdatedAt  json.RawMessage `json:"updatedAt,omitempty"`
}

// refusedBody is the body of a 422 job/refused: the error, with the
// planner's numbers.
type refusedBody struct {
	Error struct {
		ErrorDetail
		Refusal *serving.JobRefusal `json:"refusal"`
	} `json:"error"`
}

// MountJobs serves the jobs kept in st. admit, when set, checks each job
// before it is stored; submitted, when set, is called with the name of
// each job stored, for whoever runs jobs to start it.
func (h *Handler) MountJobs(st store.JobStore, admit JobAdmitter, submitted func(name string)) {
	js := &jobRoutes{h: h, st: st, admit: admit, submitted: submitted, now: time.Now}
	h.mux.HandleFunc("GET /v1/jobs", js.list)
	h.mux.HandleFunc("POST /v1/jobs", js.create)
	h.mux.HandleFunc("/v1/jobs", methodNotAllowed("GET, HEAD, POST"))
	h.mux.HandleFunc("GET /v1/jobs/{name}", js.get)
	h.mux.HandleFunc("DELETE /v1/jobs/{name}", js.delete)
	h.mux.HandleFunc("/v1/jobs/{name}", methodNotAllowed("DELETE, GET, HEAD"))
	h.mux.HandleFunc("POST /v1/jobs/{name}/cancel", js.cancel)
	h.mux.HandleFunc("/v1/jobs/{name}/cancel", methodNotAllowed("POST"))
	h.mux.HandleFunc("GET /v1/jobs/{name}/logs", js.logs)
	h.mux.HandleFunc("/v1/jobs/{name}/logs", methodNotAllowed("GET, HEAD"))
}

type jobRoutes struct {
	h         *Handler
	st        store.JobStore
	admit     JobAdmitter
	submitted func(name string)
	now       func() time.Time
}

func (js *jobRoutes) list(w http.ResponseWriter, r *http.Request) {
	jobs, err := js.st.ListJobs(r.Context())
	if err != nil {
		js.h.writeError(w, r, err)
		return
	}
	if jobs == nil {
		jobs = []serving.Job{}
	}
	writeJSON(w, http.StatusOK, JobList{Items: jobs})
}

func (js *jobRoutes) get(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	j, err := js.st.GetJob(r.Context(), name)
	if err != nil {
		js.h.writeError(w, r, jobError(err, name))
		return
	}
	writeJSON(w, http.StatusOK, j)
}

func (js *jobRoutes) create(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var b jobBody
	if err := readJSON(w, r, "job", &b); err != nil {
		js.h.writeError(w, r, err)
		return
	}
	j := serving.Job{Name: b.Name, Spec: b.Spec, Status: serving.JobStatus{Phase: serving.JobPending}}
	if j.Name == "" {
		j.Name = newJobName()
	}
	if err := js.h.CheckJob(ctx, &j, js.admit, js.now()); err != nil {
		js.refuse(w, r, err)
		return
	}
	j.Status.AddEvent(js.now(), "submitted")
	created, err := js.st.CreateJob(ctx, j)
	if err != nil {
		js.h.writeError(w, r, jobError(err, j.Name))
		return
	}
	js.h.log.Info("job submitted", "job", created.Name, "rows", created.Status.RowsTotal)
	if js.submitted != nil {
		js.submitted(created.Name)
	}
	w.Header().Set("Location", "/v1/jobs/"+created.Name)
	writeJSON(w, http.StatusCreated, created)
}

// refuse answers CheckJob's error: 422 job/refused with the numbers, or
// the error as it is.
func (js *jobRoutes) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if refusal, ok := errors.AsType[*serving.JobRefusal](err); ok {
		var body refusedBody
		body.Error.ErrorDetail = ErrorDetail{Code: codeJobRefused, Message: clipMessage("job refused: " + refusal.Error())}
		body.Error.Refusal = refusal
		writeJSON(w, http.StatusUnprocessableEntity, body)
		return
	}
	js.h.writeError(w, r, err)
}

// CheckJob checks j as POST /v1/jobs does before it stores it, for a job
// that reaches the store another way (a ModelJob that kubectl created):
// it defaults j's spec and validates it at now, checks the model of its
// own deployment and the deployment it feeds, then, with admit, its
// input, output and lease, which may fill j's status. JobRejected tells a
// job at fault from a check that could not be made (the store
// unavailable); the error's message says what is wrong, and a refused
// lease has a *serving.JobRefusal with the numbers in its chain.
func (h *Handler) CheckJob(ctx context.Context, j *serving.Job, admit JobAdmitter, now time.Time) error {
	j.Spec.Default()
	if err := j.Validate(now); err != nil {
		return &apiError{http.StatusBadRequest, codeJobInvalid, err.Error()}
	}
	if s := j.Spec.Serving; s != nil {
		if err := checkSpecExec(ctx, serving.Spec{}, *s); err != nil {
			return err
		}
		// The job's own deployment is created as the API would create
		// it: its model must resolve, and a path be within the roots.
		if err := h.checkModel(ctx, *s); err != nil {
			return err
		}
	}
	if err := h.checkJobDeployment(ctx, j.Spec); err != nil {
		return err
	}
	if admit == nil {
		return nil
	}
	err := admit.Admit(ctx, j)
	if _, refused := errors.AsType[*serving.JobRefusal](err); err == nil || refused || ctx.Err() != nil || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return &apiError{http.StatusUnprocessableEntity, codeJobInput, err.Error()}
}

// JobRejected reports whether err, from CheckJob, refuses the job for
// what it is (the API answers 4xx): checking it again will not help.
func JobRejected(err error) bool {
	if _, ok := errors.AsType[*serving.JobRefusal](err); ok {
		return true
	}
	if e, ok := errors.AsType[*apiError](err); ok {
		return e.status < http.StatusInternalServerError
	}
	_, ok := errors.AsType[*auth.Error](err)
	return ok
}

// checkJobDeployment checks that the deployment a job feeds exists and,
// when its model's inputs are known, takes the tensors the mapping makes.
func (h *Handler) checkJobDeployment(ctx context.Context, s serving.JobSpec) error {
	if s.Deployment == "" {
		return nil
	}
	d, err := h.st.GetDeployment(ctx, s.Deployment)
	if errors.Is(err, store.ErrNotFound) {
		return &apiError{http.StatusUnprocessableEntity, codeJobInput,
			fmt.Sprintf("spec.deployment: deployment %q not found: list deployments with `ebb get deployments`, or give the job its own model in spec.serving", s.Deployment)}
	} else if err != nil {
		return err
	}
	if s.Lease.MaxGPUHours > 0 && d.Spec.GPUs() == 0 {
		return &apiError{http.StatusBadRequest, codeJobInvalid,
			fmt.Sprintf("spec.lease.maxGPUHours: deployment %q: %s", s.Deployment, serving.NoGPUsLease)}
	}
	meta := h.ctl.Status(s.Deployment).Metadata
	if meta == nil || len(meta.Inputs) == 0 {
		return nil
	}
	var names []string
	for _, in := range meta.Inputs {
		names = append(names, in.Name)
	}
	for _, tc := range s.Input.Columns {
		k := slices.IndexFunc(meta.Inputs, func(in oip.TensorMetadata) bool { return in.Name == tc.Tensor })
		if k < 0 {
			return &apiError{http.StatusUnprocessableEntity, codeJobInput,
				fmt.Sprintf("spec.input.columns: tensor %q is not an input of deployment %q: its inputs are %s", tc.Tensor, s.Deployment, strings.Join(names, ", "))}
		}
		if shape := meta.Inputs[k].Shape; len(shape) == 2 && shape[1] > 0 && shape[1] != int64(len(tc.Columns)) {
			return &apiError{http.StatusUnprocessableEntity, codeJobInput,
				fmt.Sprintf("spec.input.columns: tensor %q of deployment %q takes %d columns; the mapping gives %d (%s)",
					tc.Tensor, s.Deployment, shape[1], len(tc.Columns), strings.Join(tc.Columns, ", "))}
		}
	}
	return nil
}

func (js *jobRoutes) cancel(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	j, err := js.st.UpdateJob(r.Context(), name, func(j *serving.Job) error {
		if !j.RequestCancel(js.now(), "cancel requested") {
			return &apiError{http.StatusConflict, codeJobFinished,
				fmt.Sprintf("job %q is %s already: nothing to cancel", name, j.Status.Phase)}
		}
		return nil
	})
	if err != nil {
		js.h.writeError(w, r, jobError(err, name))
		return
	}
	js.h.log.Info("job cancel requested", "job", name)
	writeJSON(w, http.StatusOK, j)
}

func (js *jobRoutes) logs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	j, err := js.st.GetJob(r.Context(), name)
	if err != nil {
		js.h.writeError(w, r, jobError(err, name))
		return
	}
	var b strings.Builder
	for _, e := range j.Status.Events {
		fmt.Fprintf(&b, "%s  %s\n", e.Time.UTC().Format(time.RFC3339), e.Message)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

func (js *jobRoutes) delete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	j, err := js.st.GetJob(r.Context(), name)
	if err == nil && !serving.JobFinished(j.Status.Phase) {
		err = &apiError{http.StatusConflict, codeJobRunning,
			fmt.Sprintf("job %q is %s: cancel it first (ebb jobs cancel %s)", name, j.Status.Phase, name)}
	}
	if err == nil {
		err = js.st.DeleteJob(r.Context(), name)
	}
	if err != nil {
		js.h.writeError(w, r, jobError(err, name))
		return
	}
	js.h.log.Info("job deleted", "job", name)
	w.WriteHeader(http.StatusNoContent)
}

// jobError maps store errors about a job to API errors.
func jobError(err error, name string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &apiError{http.StatusNotFound, codeJobNotFound,
			fmt.Sprintf("job %q not found: list jobs with `ebb jobs list`", name)}
	case errors.Is(err, store.ErrExists):
		return &apiError{http.StatusConflict, codeJobExists,
			fmt.Sprintf("job %q already exists: give the new one another name, or delete the old one (ebb jobs delete %s)", name, name)}
	}
	return err
}

// newJobName makes a name for a job submitted without one: job- and eight
// random letters and digits.
func newJobName() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "job-" + string(b)
}
