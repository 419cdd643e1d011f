package serving

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"path"
	"strings"
	"time"
)

// Job defaults and bounds.
const (
	DefaultChunkRows = 1000
	MaxChunkRows     = 1_000_000
	// MaxJobNameLength leaves room for "job-" in the name of a job's own
	// deployment.
	MaxJobNameLength = 59
	// MaxJobTensors bounds spec.input.columns.
	MaxJobTensors = 64
)

// NoGPUsLease is what refuses a lease with maxGPUHours for a serving spec
// that asks for no GPUs.
const NoGPUsLease = "spec asks for no GPUs: use maxReplicaHours"

// Job formats.
const (
	FormatCSV     = "csv"
	FormatJSONL   = "jsonl"
	FormatParquet = "parquet"
)

// What a bad row does (JobSpec.OnBadRow).
const (
	BadRowFail = "fail"
	BadRowSkip = "skip"
)

// JobDatatypes are the datatypes an input tensor of a job may have.
var JobDatatypes = []string{"FP32", "FP64", "INT32", "INT64", "BOOL", "BYTES"}

// JobValidationError collects every field error of a job.
//
// +kubebuilder:object:generate=false
type JobValidationError struct {
	Errors []*FieldError
}

func (e *JobValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		parts[i] = fe.Error()
	}
	return "invalid job: " + strings.Join(parts, "; ")
}

// FormatOf returns the format a URI's extension implies ("" when none
// does).
func FormatOf(uri string) string {
	switch strings.ToLower(path.Ext(strings.TrimSuffix(uri, "/"))) {
	case ".csv":
		return FormatCSV
	case ".jsonl", ".ndjson":
		return FormatJSONL
	case ".parquet", ".pq":
		return FormatParquet
	}
	return ""
}

// Default fills the zero fields of s with defaults. Call it before
// Validate.
func (s *JobSpec) Default() {
	if s.ChunkRows == 0 {
		s.ChunkRows = DefaultChunkRows
	}
	if s.OnBadRow == "" {
		s.OnBadRow = BadRowFail
	}
	if s.Input.Format == "" {
		s.Input.Format = FormatOf(s.Input.URI)
	}
	if s.Output.Format == "" {
		s.Output.Format = FormatOf(s.Output.URI)
	}
	for i := range s.Input.Columns {
		if s.Input.Columns[i].Datatype == "" {
			s.Input.Columns[i].Datatype = "FP32"
		}
	}
	if s.Serving != nil {
		s.Serving.Default()
	}
}

// Validate checks j's name and spec and returns a *JobValidationError
// listing every problem, or nil. With now not zero, a deadline at or
// before now is one.
func (j *Job) Validate(now time.Time) error {
	var errs []*FieldError
	if err := ValidateName(j.Name); err != nil {
		var fe *FieldError
		errors.As(err, &fe)
		errs = append(errs, fe)
	} else if len(j.Name) > MaxJobNameLength {
		errs = append(errs, &FieldError{"name", fmt.Sprintf("%q is %d characters long; a job's name may have at most %d (its own deployment is job-NAME)", j.Name, len(j.Name), MaxJobNameLength)})
	}
	errs = append(errs, j.Spec.validate(now)...)
	if len(errs) > 0 {
		return &JobValidationError{Errors: errs}
	}
	return nil
}

func (s *JobSpec) validate(now time.Time) []*FieldError {
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{field, fmt.Sprintf(format, args...)})
	}
	checkLocation(add, "spec.input", s.Input.URI, s.Input.Format, []string{FormatCSV, FormatJSONL, FormatParquet})
	checkLocation(add, "spec.output", s.Output.URI, s.Output.Format, []string{FormatJSONL, FormatCSV, FormatParquet})
	if s.Input.URI != "" && s.Input.URI == s.Output.URI {
		add("spec.output.uri", "is the input: give another location")
	}
	in := s.Input
	if len(in.Columns) == 0 {
		add("spec.input.columns", `is required: map columns to input tensors, e.g. [{tensor: input-0, columns: [age, bmi]}]`)
	} else if len(in.Columns) > MaxJobTensors {
		add("spec.input.columns", "has %d tensors; at most %d are allowed", len(in.Columns), MaxJobTensors)
	}
	tensors := map[string]bool{}
	for i, tc := range in.Columns {
		field := fmt.Sprintf("spec.input.columns[%d]", i)
		switch {
		case strings.TrimSpace(tc.Tensor) == "":
			add(field+".tensor", "is required: name the model's input tensor")
		case tensors[tc.Tensor]:
			add(field+".tensor", "%q is mapped twice: give each tensor one entry", tc.Tensor)
		}
		tensors[tc.Tensor] = true
		known := false
		for _, d := range JobDatatypes {
			known = known || d == tc.Datatype
		}
		if !known {
			add(field+".datatype", "%q is not one a job reads: use one of %s", tc.Datatype, strings.Join(JobDatatypes, ", "))
		}
		if len(tc.Columns) == 0 {
			add(field+".columns", "is required: list the columns that make tensor %q", tc.Tensor)
		}
		for k, c := range tc.Columns {
			if strings.TrimSpace(c) == "" {
				add(fmt.Sprintf("%s.columns[%d]", field, k), "is empty: name a column of the input")
			}
		}
	}
	switch {
	case s.Deployment == "" && s.Serving == nil:
		add("spec", "give exactly one of deployment (an existing deployment to feed at batch priority) or serving (a model the job runs replicas of)")
	case s.Deployment != "" && s.Serving != nil:
		add("spec", "give only one of deployment and serving: a job feeds an existing deployment or runs its own")
	case s.Deployment != "":
		if err := ValidateName(s.Deployment); err != nil {
			add("spec.deployment", "%q is not a deployment name", s.Deployment)
		}
	default:
		errs = append(errs, s.validateServing()...)
	}
	if s.Deadline.IsZero() {
		add("spec.deadline", "is required: when the last row must be done, RFC 3339 (e.g. 2026-03-02T06:00:00Z)")
	} else if !now.IsZero() && !s.Deadline.After(now) {
		add("spec.deadline", "%s is in the past (now %s): give a later one", s.Deadline.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	l := s.Lease
	if l.MaxReplicas < 1 || l.MaxReplicas > MaxReplicasLimit {
		add("spec.lease.maxReplicas", "must be between 1 and %d, got %d", MaxReplicasLimit, l.MaxReplicas)
	}
	if !(l.MaxReplicaHours > 0) || math.IsInf(l.MaxReplicaHours, 0) {
		add("spec.lease.maxReplicaHours", "must be above 0, got %g: the replica-hours the job may use", l.MaxReplicaHours)
	}
	switch {
	case l.MaxGPUHours < 0 || math.IsNaN(l.MaxGPUHours) || math.IsInf(l.MaxGPUHours, 0):
		add("spec.lease.maxGPUHours", "must be 0 (no GPU bound) or more, got %g", l.MaxGPUHours)
	case l.MaxGPUHours > 0 && s.Serving != nil && s.Serving.GPUs() == 0:
		add("spec.lease.maxGPUHours", "%s", NoGPUsLease)
	}
	errs = append(errs, validateJobWindows(l.Windows)...)
	if s.ChunkRows < 1 || s.ChunkRows > MaxChunkRows {
		add("spec.chunkRows", "must be between 1 and %d, got %d", MaxChunkRows, s.ChunkRows)
	}
	if s.OnBadRow != BadRowFail && s.OnBadRow != BadRowSkip {
		add("spec.onBadRow", "%q is not a policy: use fail or skip", s.OnBadRow)
	}
	if s.RowsPerSecond < 0 || math.IsNaN(s.RowsPerSecond) || math.IsInf(s.RowsPerSecond, 0) {
		add("spec.rowsPerSecond", "must be 0 (measure it) or more, got %g", s.RowsPerSecond)
	}
	return errs
}

// checkLocation checks a dataset's uri and format.
func checkLocation(add func(field, format string, args ...any), field, uri, format string, formats []string) {
	switch {
	case strings.TrimSpace(uri) == "":
		add(field+".uri", "is required: file:///path, a path, or s3://bucket/key")
	case strings.HasPrefix(uri, "s3://"):
		u, err := url.Parse(uri)
		if err != nil || u.Host == "" || strings.Trim(u.Path, "/") == "" {
			add(field+".uri", "%q is not s3://bucket/key", uri)
		}
	case strings.HasPrefix(uri, "file://"):
		if !strings.HasPrefix(strings.TrimPrefix(uri, "file://"), "/") {
			add(field+".uri", "%q must be file:///absolute/path", uri)
		}
	case strings.Contains(uri, "://"):
		add(field+".uri", "%q: only file:// and s3:// are supported", uri)
	}
	ok := false
	for _, f := range formats {
		ok = ok || f == format
	}
	if !ok {
		if format == "" {
			add(field+".format", "is required: the URI's extension says none; give one of %s", strings.Join(formats, ", "))
		} else {
			add(field+".format", "%q is not one of %s", format, strings.Join(formats, ", "))
		}
	}
}

// validateServing checks a job's own deployment spec: a deployment's
// checks, under spec.serving, and none of what the planner decides.
func (s *JobSpec) validateServing() []*FieldError {
	var errs []*FieldError
	for _, fe := range s.Serving.validate() {
		errs = append(errs, &FieldError{"spec.serving" + strings.TrimPrefix(fe.Field, "spec"), fe.Message})
	}
	add := func(field, msg string) { errs = append(errs, &FieldError{field, msg}) }
	if s.Serving.Replicas != nil {
		add("spec.serving.replicas", "is not for jobs: the planner sizes a job's replicas within spec.lease.maxReplicas")
	}
	if len(s.Serving.Traffic) > 0 {
		add("spec.serving.traffic", "is not for jobs: a job runs one model")
	}
	if s.Serving.Shadow != nil {
		add("spec.serving.shadow", "is not for jobs: a job runs one model")
	}
	if len(s.Serving.Scaling.Schedule) > 0 {
		add("spec.serving.scaling.schedule", "is not for jobs: give the times the job may run in spec.lease.windows")
	}
	return errs
}

// validateJobWindows checks spec.lease.windows: schedule windows without
// replica bounds.
func validateJobWindows(ws []ScheduleWindow) []*FieldError {
	var errs []*FieldError
	if len(ws) > MaxScheduleWindows {
		errs = append(errs, &FieldError{"spec.lease.windows", fmt.Sprintf("has %d windows; at most %d are allowed", len(ws), MaxScheduleWindows)})
	}
	for i, w := range ws {
		field := fmt.Sprintf("spec.lease.windows[%d]", i)
		add := func(sub, format string, args ...any) {
			errs = append(errs, &FieldError{field + sub, fmt.Sprintf(format, args...)})
		}
		if _, err := parseClock(w.Start); err != nil {
			add(".start", "%v", err)
		}
		if _, err := parseClock(w.End); err != nil {
			add(".end", "%v", err)
		} else if w.Start == w.End {
			add(".end", "equals start: a window needs a length (for all day, give 00:00 to 23:59)")
		}
		if _, err := parseDays(w.Days); err != nil {
			add(".days", "%v", err)
		}
		if w.TimeZone != "" {
			if _, err := location(w.TimeZone); err != nil {
				add(".timeZone", "%q is not an IANA time zone: give one such as Europe/Paris or America/New_York", w.TimeZone)
			}
		}
		if w.MinReplicas != nil || w.MaxReplicas != nil {
			add("", "minReplicas and maxReplicas are not for a job's windows: the lease's maxReplicas applies")
		}
	}
	return errs
}
