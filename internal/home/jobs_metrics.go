package home

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebb-ml/ebb/internal/serving"
)

// jobPhases are the phases ebb_job_phase has a series of, per job.
var jobPhases = []string{serving.JobPending, serving.JobPlanning, serving.JobRunning, serving.JobSucceeded,
	serving.JobFailed, serving.JobCancelled, serving.JobRefused}

// jobMetrics exports the jobs the manager last read from the store, and
// only those: a deleted job's series go with it.
//
//	ebb_job_rows_total{job}             input rows done (bad rows skipped included)
//	ebb_job_replica_seconds_total{job}  replica-seconds the job has used of its lease
//	ebb_job_gpu_seconds_total{job}      GPU-seconds (replica-seconds × GPUs per replica), once the job used any
//	ebb_job_phase{job,phase}            1 for the job's phase, 0 for the others
//	ebb_job_deadline_timestamp_seconds{job}  when its last row must be done
//	ebb_job_eta_timestamp_seconds{job}  when its last row is expected at the measured rate (once measured)
type jobMetrics struct {
	rows, seconds, gpuSeconds, phase, deadline, eta *prometheus.Desc

	mu   sync.Mutex
	jobs []jobSample
}

type jobSample struct {
	name, phase  string
	rows         int64
	replicaHours float64
	gpuHours     float64
	deadline     time.Time
	eta          *time.Time
}

func newJobMetrics() *jobMetrics {
	return &jobMetrics{
		rows: prometheus.NewDesc("ebb_job_rows_total",
			"Input rows a batch job has done, bad rows it skipped included.", []string{"job"}, nil),
		seconds: prometheus.NewDesc("ebb_job_replica_seconds_total",
			"Replica-seconds a batch job has used of its lease.", []string{"job"}, nil),
		gpuSeconds: prometheus.NewDesc("ebb_job_gpu_seconds_total",
			"GPU-seconds a batch job has used of its lease: replica-seconds × the GPUs per replica of its deployment; absent for a job that used none.", []string{"job"}, nil),
		phase: prometheus.NewDesc("ebb_job_phase",
			"1 for a batch job's phase (Pending, Planning, Running, Succeeded, Failed, Cancelled, Refused), 0 for the others.", []string{"job", "phase"}, nil),
		deadline: prometheus.NewDesc("ebb_job_deadline_timestamp_seconds",
			"When a batch job's last row must be done (its spec.deadline), in Unix seconds.", []string{"job"}, nil),
		eta: prometheus.NewDesc("ebb_job_eta_timestamp_seconds",
			"When a batch job's last row is expected at its measured rate, in Unix seconds; absent until measured.", []string{"job"}, nil),
	}
}

// set replaces the jobs exported.
func (x *jobMetrics) set(all []serving.Job) {
	s := make([]jobSample, len(all))
	for i, j := range all {
		s[i] = jobSample{name: j.Name, phase: j.Status.Phase, rows: j.Status.RowsDone, replicaHours: j.Status.ReplicaHours,
			gpuHours: j.Status.GPUHours, deadline: j.Spec.Deadline, eta: j.Status.ETA}
	}
	x.mu.Lock()
	x.jobs = s
	x.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (x *jobMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- x.rows
	ch <- x.seconds
	ch <- x.gpuSeconds
	ch <- x.phase
	ch <- x.deadline
	ch <- x.eta
}

// Collect implements prometheus.Collector.
func (x *jobMetrics) Collect(ch chan<- prometheus.Metric) {
	x.mu.Lock()
	s := x.jobs
	x.mu.Unlock()
	for _, j := range s {
		ch <- prometheus.MustNewConstMetric(x.rows, prometheus.CounterValue, float64(j.rows), j.name)
		ch <- prometheus.MustNewConstMetric(x.seconds, prometheus.CounterValue, j.replicaHours*3600, j.name)
		if j.gpuHours > 0 {
			ch <- prometheus.MustNewConstMetric(x.gpuSeconds, prometheus.CounterValue, j.gpuHours*3600, j.name)
		}
		if !j.deadline.IsZero() {
			ch <- prometheus.MustNewConstMetric(x.deadline, prometheus.GaugeValue, float64(j.deadline.UnixMilli())/1e3, j.name)
		}
		if j.eta != nil {
			ch <- prometheus.MustNewConstMetric(x.eta, prometheus.GaugeValue, float64(j.eta.UnixMilli())/1e3, j.name)
		}
		for _, p := range jobPhases {
			v := 0.0
			if p == j.phase {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(x.phase, prometheus.GaugeValue, v, j.name, p)
		}
	}
}
