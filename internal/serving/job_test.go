package serving

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

func validJob() Job {
	j := Job{
		Name: "weekly-scores",
		Spec: JobSpec{
			Input: JobInput{URI: "file:///data/in.csv", Columns: []TensorColumns{
				{Tensor: "input-0", Columns: []string{"age", "bmi"}},
			}},
			Deployment: "diabetes",
			Output:     JobOutput{URI: "file:///data/out.jsonl"},
			Deadline:   time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC),
			Lease:      Lease{MaxReplicas: 4, MaxReplicaHours: 10},
		},
	}
	j.Spec.Default()
	return j
}

func TestJobDefault(t *testing.T) {
	j := validJob()
	s := j.Spec
	if s.ChunkRows != DefaultChunkRows || s.OnBadRow != BadRowFail || s.Input.Format != FormatCSV ||
		s.Output.Format != FormatJSONL || s.Input.Columns[0].Datatype != "FP32" {
		t.Errorf("defaults = %+v", s)
	}
}

func TestJobValidate(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	one := int32(1)
	tests := []struct {
		name   string
		change func(j *Job)
		want   []string // substrings of the error; none: valid
	}{
		{"valid", func(j *Job) {}, nil},
		{"own model", func(j *Job) {
			j.Spec.Deployment = ""
			j.Spec.Serving = &Spec{Model: "examples/diabetes/model.json"}
			j.Spec.Default()
		}, nil},
		{"windows", func(j *Job) {
			j.Spec.Lease.Windows = []ScheduleWindow{{Days: []string{"Sat-Sun"}, Start: "00:00", End: "23:59", TimeZone: "Europe/Paris"}}
		}, nil},
		{"long name", func(j *Job) { j.Name = strings.Repeat("a", 60) }, []string{"name:", "at most 59"}},
		{"bad name", func(j *Job) { j.Name = "Weekly" }, []string{"name:"}},
		{"no input", func(j *Job) { j.Spec.Input.URI = "" }, []string{"spec.input.uri: is required"}},
		{"http input", func(j *Job) { j.Spec.Input.URI = "http://x/in.csv" }, []string{"spec.input.uri", "only file:// and s3://"}},
		{"relative file URI", func(j *Job) { j.Spec.Input.URI = "file://in.csv" }, []string{"file:///absolute/path"}},
		{"bad s3", func(j *Job) { j.Spec.Input.URI = "s3://bucket" }, []string{"not s3://bucket/key"}},
		{"unknown format", func(j *Job) { j.Spec.Input.Format = "xlsx" }, []string{"spec.input.format", "xlsx"}},
		{"no format", func(j *Job) { j.Spec.Output = JobOutput{URI: "file:///data/out"} }, []string{"spec.output.format: is required"}},
		{"output is input", func(j *Job) { j.Spec.Output.URI = j.Spec.Input.URI; j.Spec.Output.Format = "csv" }, []string{"spec.output.uri: is the input"}},
		{"no columns", func(j *Job) { j.Spec.Input.Columns = nil }, []string{"spec.input.columns: is required"}},
		{"tensor twice", func(j *Job) {
			j.Spec.Input.Columns = append(j.Spec.Input.Columns, j.Spec.Input.Columns[0])
		}, []string{"spec.input.columns[1].tensor", "mapped twice"}},
		{"bad datatype", func(j *Job) { j.Spec.Input.Columns[0].Datatype = "FP16" }, []string{"spec.input.columns[0].datatype"}},
		{"empty column", func(j *Job) { j.Spec.Input.Columns[0].Columns = []string{"age", " "} }, []string{"spec.input.columns[0].columns[1]"}},
		{"neither model", func(j *Job) { j.Spec.Deployment = "" }, []string{"exactly one of deployment"}},
		{"both models", func(j *Job) { j.Spec.Serving = &Spec{Model: "m.json"}; j.Spec.Default() }, []string{"only one of deployment and serving"}},
		{"serving checked", func(j *Job) {
			j.Spec.Deployment = ""
			j.Spec.Serving = &Spec{Engine: "trees"}
			j.Spec.Default()
		}, []string{"spec.serving.model: is required"}},
		{"serving replicas", func(j *Job) {
			j.Spec.Deployment = ""
			j.Spec.Serving = &Spec{Model: "m.json", Replicas: &one}
			j.Spec.Default()
		}, []string{"spec.serving.replicas", "planner"}},
		{"no deadline", func(j *Job) { j.Spec.Deadline = time.Time{} }, []string{"spec.deadline: is required"}},
		{"past deadline", func(j *Job) { j.Spec.Deadline = now.Add(-time.Hour) }, []string{"spec.deadline", "in the past"}},
		{"no lease", func(j *Job) { j.Spec.Lease = Lease{} }, []string{"spec.lease.maxReplicas", "spec.lease.maxReplicaHours"}},
		{"window bounds", func(j *Job) {
			j.Spec.Lease.Windows = []ScheduleWindow{{Start: "00:00", End: "06:00", MaxReplicas: &one}}
		}, []string{"spec.lease.windows[0]", "not for a job's windows"}},
		{"window clock", func(j *Job) {
			j.Spec.Lease.Windows = []ScheduleWindow{{Start: "25:00", End: "06:00", Days: []string{"Funday"}}}
		}, []string{"spec.lease.windows[0].start", "spec.lease.windows[0].days"}},
		{"negative GPU-hours", func(j *Job) { j.Spec.Lease.MaxGPUHours = -1 }, []string{"spec.lease.maxGPUHours", "0 (no GPU bound) or more"}},
		{"GPU-hours for a fed deployment", func(j *Job) { j.Spec.Lease.MaxGPUHours = 4 }, nil}, // the API checks its spec
		{"GPU-hours, own spec with GPUs", func(j *Job) {
			j.Spec.Deployment = ""
			j.Spec.Serving = &Spec{Model: "examples/diabetes/model.json",
				Template: Template{Resources: ResourceRequirements{Limits: ResourceList{ResourceGPU: resource.MustParse("1")}}}}
			j.Spec.Default()
			j.Spec.Lease.MaxGPUHours = 4
		}, nil},
		{"GPU-hours, own spec without GPUs", func(j *Job) {
			j.Spec.Deployment = ""
			j.Spec.Serving = &Spec{Model: "examples/diabetes/model.json"}
			j.Spec.Default()
			j.Spec.Lease.MaxGPUHours = 4
		}, []string{"spec.lease.maxGPUHours", "spec asks for no GPUs: use maxReplicaHours"}},
		{"chunk rows", func(j *Job) { j.Spec.ChunkRows = -1 }, []string{"spec.chunkRows"}},
		{"bad row policy", func(j *Job) { j.Spec.OnBadRow = "ignore" }, []string{"spec.onBadRow"}},
		{"negative rate", func(j *Job) { j.Spec.RowsPerSecond = -1 }, []string{"spec.rowsPerSecond"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := validJob()
			tt.change(&j)
			err := j.Validate(now)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil; want an error with %q", tt.want)
			}
			if _, ok := err.(*JobValidationError); !ok {
				t.Errorf("Validate returned %T; want *JobValidationError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q; want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestJobRefusalError(t *testing.T) {
	r := &JobRefusal{Rows: 100000, RowsPerSecondPerReplica: 10, Deadline: time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC),
		AllowedHours: 1, NeededReplicas: 3, AllowedReplicas: 2, NeededReplicaHours: 2.78, AllowedReplicaHours: 2}
	got := r.Error()
	for _, w := range []string{"100000 rows", "needs 3 replicas and the lease allows 2", "needs 2.78 replica-hours and the lease allows 2.00"} {
		if !strings.Contains(got, w) {
			t.Errorf("Error() = %q; want %q in it", got, w)
		}
	}
}

func TestJobRefusalErrorGPUHours(t *testing.T) {
	r := &JobRefusal{Rows: 1000, RowsPerSecondPerReplica: 10, Deadline: time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC),
		AllowedHours: 10, NeededReplicas: 1, AllowedReplicas: 2, NeededReplicaHours: 3, AllowedReplicaHours: 10,
		GPUsPerReplica: 4, NeededGPUHours: 12, AllowedGPUHours: 8}
	got := r.Error()
	if w := "it needs 12.00 GPU-hours (4 GPUs per replica) and the lease allows 8.00"; !strings.Contains(got, w) || strings.Contains(got, "replica-hours and") {
		t.Errorf("Error() = %q; want %q in it, and nothing of replica-hours", got, w)
	}
}

func TestJobEventsBounded(t *testing.T) {
	var s JobStatus
	at := time.Unix(0, 0)
	for i := range MaxJobEvents + 5 {
		s.AddEvent(at, "event %d", i)
	}
	if len(s.Events) != MaxJobEvents || s.Events[0].Message != "event 5" {
		t.Errorf("events = %d, first %q; want %d, first \"event 5\"", len(s.Events), s.Events[0].Message, MaxJobEvents)
	}
	if _, err := json.Marshal(s); err != nil {
		t.Fatal(err)
	}
}
