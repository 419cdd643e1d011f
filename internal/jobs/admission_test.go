package jobs

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/ebb-ml/ebb/internal/serving"
)

func TestAdmit(t *testing.T) {
	dir := t.TempDir()
	csvIn := writeDataset(t, dir, serving.FormatCSV, 1000, -1)
	jsonlIn := writeDataset(t, dir, serving.FormatJSONL, 1000, -1)
	parquetIn := writeDataset(t, dir, serving.FormatParquet, 1000, -1)
	out := filepath.Join(dir, "out.jsonl")
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		change  func(j *serving.Job)
		input   bool   // want an *InputError
		refused bool   // want a *serving.JobRefusal
		msg     string // in the error
		plan    int32  // replicas of the plan, when one is made
	}{
		{name: "csv", change: func(j *serving.Job) {}},
		{name: "jsonl", change: func(j *serving.Job) { j.Spec.Input.URI, j.Spec.Input.Format = jsonlIn, serving.FormatJSONL }},
		{name: "parquet", change: func(j *serving.Job) { j.Spec.Input.URI, j.Spec.Input.Format = parquetIn, serving.FormatParquet }},
		{name: "sized at its rate", change: func(j *serving.Job) { j.Spec.RowsPerSecond = 1 }, plan: 1},
		{
			name: "too slow for its lease", change: func(j *serving.Job) {
				j.Spec.RowsPerSecond = 0.01
				j.Spec.Lease.MaxReplicas = 2
			},
			refused: true, msg: "cannot finish 1000 rows by 2026-03-02T13:00:00Z at 0.01 rows/s per replica (1.00 h allowed before the deadline): it needs 31 replicas and the lease allows 2",
		},
		{
			// 1000 rows at 0.9 row/s (the headroom): 0.31 replica-hours, × 2 GPUs = 0.62
			// GPU-hours; 0.5 allowed.
			name: "GPU-hours too few", change: func(j *serving.Job) {
				j.Spec.RowsPerSecond = 1
				j.Spec.Lease.MaxGPUHours = 0.5
				j.Spec.Deployment, j.Spec.Serving = "", &serving.Spec{Model: "m.json", Template: serving.Template{Resources: serving.ResourceRequirements{
					Limits: serving.ResourceList{serving.ResourceGPU: resource.MustParse("2")}}}}
			},
			refused: true, msg: "it needs 0.62 GPU-hours (2 GPUs per replica) and the lease allows 0.50",
		},
		{
			name: "GPU-hours enough", change: func(j *serving.Job) {
				j.Spec.RowsPerSecond = 1
				j.Spec.Lease.MaxGPUHours = 1
				j.Spec.Deployment, j.Spec.Serving = "", &serving.Spec{Model: "m.json", Template: serving.Template{Resources: serving.ResourceRequirements{
					Limits: serving.ResourceList{serving.ResourceGPU: resource.MustParse("2")}}}}
			},
			plan: 1,
		},
		{
			name: "no window before the deadline", change: func(j *serving.Job) { j.Spec.Lease.Windows = nightly },
			refused: true, msg: "no allowed time is left before the deadline",
		},
		{name: "missing input", change: func(j *serving.Job) { j.Spec.Input.URI = filepath.Join(dir, "nope.csv") }, input: true, msg: "nope.csv cannot be read"},
		{
			name: "csv column missing", change: func(j *serving.Job) { j.Spec.Input.Columns[0].Columns = []string{"a", "bmi"} },
			input: true, msg: `column "bmi" (of tensor "x") is not in the input: it has id, a, b, c, unused`,
		},
		{
			name: "jsonl column missing", change: func(j *serving.Job) {
				j.Spec.Input.URI, j.Spec.Input.Format = jsonlIn, serving.FormatJSONL
				j.Spec.Input.Columns[1].Columns = []string{"d"}
			},
			input: true, msg: `column "d" (of tensor "z") is not in the input`,
		},
		{
			name: "parquet column missing", change: func(j *serving.Job) {
				j.Spec.Input.URI, j.Spec.Input.Format = parquetIn, serving.FormatParquet
				j.Spec.Input.IDColumn = "key"
			},
			input: true, msg: `id column "key" is not in the input: it has id, a, b, c`,
		},
		{name: "not parquet", change: func(j *serving.Job) { j.Spec.Input.Format = serving.FormatParquet }, input: true, msg: "not a Parquet file"},
		{name: "output directory missing", change: func(j *serving.Job) { j.Spec.Output.URI = filepath.Join(dir, "no", "out.csv") }, input: true, msg: "does not exist: create it first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := testJob("admit", csvIn, out)
			j.Spec.Deadline = now.Add(time.Hour)
			tt.change(&j)
			a := &Admission{Clock: &stepClock{t: now}}
			err := a.Admit(context.Background(), &j)
			var ie *InputError
			var r *serving.JobRefusal
			switch {
			case tt.input && !errors.As(err, &ie), tt.refused && !errors.As(err, &r):
				t.Fatalf("Admit = %v (%T); want an input error or a refusal as the test says", err, err)
			case !tt.input && !tt.refused:
				if err != nil {
					t.Fatalf("Admit = %v; want nil", err)
				}
				if j.Status.RowsTotal != 1000 || j.Status.ChunksTotal != 10 {
					t.Errorf("status = %d rows, %d chunks; want 1000 and 10", j.Status.RowsTotal, j.Status.ChunksTotal)
				}
				if got := j.Status.Plan; (tt.plan == 0) != (got == nil) || got != nil && got.Replicas != tt.plan {
					t.Errorf("plan = %+v; want %d replicas", got, tt.plan)
				}
			}
			if err != nil && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Admit = %q; want %q in it", err, tt.msg)
			}
		})
	}
}
