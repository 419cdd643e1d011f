package home

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ebb-ml/ebb/internal/serving"
)

func TestJobMetricsGPUSeconds(t *testing.T) {
	tests := []struct {
		name   string
		status serving.JobStatus
		want   string // the ebb_job_gpu_seconds_total exposition; empty: absent
	}{
		{"no GPUs", serving.JobStatus{Phase: serving.JobRunning, ReplicaHours: 1}, ""},
		{"GPUs", serving.JobStatus{Phase: serving.JobRunning, ReplicaHours: 1, GPUHours: 2},
			"# HELP ebb_job_gpu_seconds_total GPU-seconds a batch job has used of its lease: replica-seconds × the GPUs per replica of its deployment; absent for a job that used none.\n" +
				"# TYPE ebb_job_gpu_seconds_total counter\nebb_job_gpu_seconds_total{job=\"scores\"} 7200\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newJobMetrics()
			m.set([]serving.Job{{Name: "scores", Status: tt.status}})
			if err := testutil.CollectAndCompare(m, strings.NewReader(tt.want), "ebb_job_gpu_seconds_total"); err != nil {
				t.Error(err)
			}
		})
	}
}
