package jobs

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ebb-ml/ebb/internal/serving"
)

// monday is 2026-03-02, a Monday, at noon UTC.
var monday = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

var nightly = []serving.ScheduleWindow{{Name: "night", Start: "22:00", End: "06:00"}}

// approx compares replica-hours and rates to a millionth, times to a
// millisecond.
var approx = cmp.Options{cmpopts.EquateApprox(1e-6, 1e-9), cmpopts.EquateApproxTime(time.Millisecond)}

func secs(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

func TestPlan(t *testing.T) {
	noHeadroom := Planner{Headroom: -1}
	tests := []struct {
		name    string
		planner Planner
		s       Situation
		want    serving.JobPlan
		refusal *serving.JobRefusal
		msg     []string // in the refusal's message
	}{
		{
			name:    "fewest replicas that meet the deadline",
			planner: noHeadroom,
			s: Situation{Now: monday, Deadline: monday.Add(2 * time.Hour), RowsLeft: 100_000, RowsPerSecondPerReplica: 10,
				Lease: serving.Lease{MaxReplicas: 8, MaxReplicaHours: 10}},
			// 2 replicas at 10 rows/s: 5000 s; 1 would take 10000 s > 7200.
			want: serving.JobPlan{Replicas: 2, RowsPerSecondPerReplica: 10, ReplicaHours: 100_000.0 / 10 / 3600,
				Finish: monday.Add(5000 * time.Second), PlannedAt: monday},
		},
		{
			name:    "headroom plans with 90% of the rate",
			planner: Planner{},
			s: Situation{Now: monday, Deadline: monday.Add(5000 * time.Second), RowsLeft: 100_000, RowsPerSecondPerReplica: 10,
				Lease: serving.Lease{MaxReplicas: 8, MaxReplicaHours: 10}},
			// 2 replicas at 9 rows/s take 5556 s: 3 are needed.
			want: serving.JobPlan{Replicas: 3, RowsPerSecondPerReplica: 10, ReplicaHours: 100_000.0 / 9 / 3600,
				Finish: monday.Add(secs(100_000.0 / 27)), PlannedAt: monday},
		},
		{
			name:    "too few replicas allowed",
			planner: noHeadroom,
			s: Situation{Now: monday, Deadline: monday.Add(2 * time.Hour), RowsLeft: 100_000, RowsPerSecondPerReplica: 10,
				Lease: serving.Lease{MaxReplicas: 1, MaxReplicaHours: 10}},
			refusal: &serving.JobRefusal{Rows: 100_000, RowsPerSecondPerReplica: 10, Deadline: monday.Add(2 * time.Hour), AllowedHours: 2,
				NeededReplicas: 2, AllowedReplicas: 1, NeededReplicaHours: 100_000.0 / 10 / 3600, AllowedReplicaHours: 10},
			msg: []string{"cannot finish 100000 rows", "it needs 2 replicas and the lease allows 1"},
		},
		{
			name:    "far too few replicas allowed",
			planner: noHeadroom,
			s: Situation{Now: monday, Deadline: monday.Add(time.Hour), RowsLeft: 3_600_000, RowsPerSecondPerReplica: 1,
				Lease: serving.Lease{MaxReplicas: 4, MaxReplicaHours: 5000}},
			refusal: &serving.JobRefusal{Rows: 3_600_000, RowsPerSecondPerReplica: 1, Deadline: monday.Add(time.Hour), AllowedHours: 1,
				NeededReplicas: 1000, AllowedReplicas: 4, NeededReplicaHours: 1000, AllowedReplicaHours: 5000},
			msg: []string{"it needs 1000 replicas and the lease allows 4"},
		},
		{
			name:    "budget too small",
			planner: noHeadroom,
			s: Situation{Now: monday, Deadline: monday.Add(2 * time.Hour), RowsLeft: 100_000, RowsPerSecondPerReplica: 10,
				Lease: serving.Lease{MaxReplicas: 8, MaxReplicaHours: 2}},
			refusal: &serving.JobRefusal{Rows: 100_000, RowsPerSecondPerReplica: 10, Deadline: monday.Add(2 * time.Hour), AllowedHours: 2,
				NeededReplicas: 2, AllowedReplicas: 8, NeededReplicaHours: 100_000.0 / 10 / 3600, AllowedReplicaHours: 2},
			msg: []string{"it needs 2.78 replica-hours and the lease allows 2.00"},
		},
		{
			name:    "hours already used count",
			planner: noHeadroom,
			s: Situation{Now: monday, Deadline: monday.Add(2 * time.Hour), RowsLeft: 100_000, RowsPerSecondPerReplica: 10,
				Lease: serving.Lease{MaxReplicas: 8, MaxReplicaHours: 3.5}, UsedReplicaHours: 1},
			refusal: &serving.JobRefusal{Rows: 100_000, RowsPerSecondPerReplica: 10, Deadline: monday.Add(2 * time.Hour), AllowedHours: 2,
				NeededReplicas: 2, AllowedReplicas: 8, NeededReplicaHours: 100_000.0 / 10 / 3600, AllowedReplicaHours: 2.5},
			msg: []string{"needs 2.78 replica-hours and the lease allows 2.50"},
		},
		{
			name:    "GPU-hours too few",
			planner: noHeadroom,
			// 2.78 replica-hours × 4 GPUs = 11.11 GPU-hours; 10 allowed.
			s: Situation{Now: monday, Deadline: monday.Add(2 * time.Hour), RowsLeft: 100_000, RowsPerSecondPerReplica: 10,
				Lease: serving.Lease{MaxReplicas: 8, MaxReplicaHours: 10, MaxGPUHours: 12}, GPUsPerReplica: 4, UsedGPUHours: 2},
			refusal: &serving.JobRefusal{Rows: 100_000, RowsPerSecondPerReplica: 10, Deadline: monday.Add(2 * time.Hour), AllowedHours: 2,
				NeededReplicas: 2, AllowedReplicas: 8, NeededReplicaHours: 100_000.0 / 10 / 3600, AllowedReplicaHours: 10,
				GPUsPerReplica: 4, NeededGPUHours: 4 * 100_000.0 / 10 / 3600, AllowedGPUHours: 10},
			msg: []string{"it needs 11.11 GPU-hours (4 GPUs per replica) and the lease allows 10.00"},
		},
		{
			name:    "GPU-hours enough",
			planner: noHeadroom,
			s: Situation{Now: monday, Deadline: monday.Add(2 * time.Hour), RowsLeft: 100_000, RowsPerSecondPerReplica: 10,
				Lease: serving.Lease{MaxReplicas: 8, MaxReplicaHours: 10, MaxGPUHours: 12}, GPUsPerReplica: 4},
			want: serving.JobPlan{Replicas: 2, RowsPerSecondPerReplica: 10, ReplicaHours: 100_000.0 / 10 / 3600,
				Finish: monday.Add(5000 * time.Second), PlannedAt: monday},
		},
		{
			name:    "GPU-hours ignored without GPUs",
			planner: noHeadroom,
			s: Situation{Now: monday, Deadline: monday.Add(2 * time.Hour), RowsLeft: 100_000, RowsPerSecondPerReplica: 10,
				Lease: serving.Lease{MaxReplicas: 8, MaxReplicaHours: 10, MaxGPUHours: 1}},
			want: serving.JobPlan{Replicas: 2, RowsPerSecondPerReplica: 10, ReplicaHours: 100_000.0 / 10 / 3600,
				Finish: monday.Add(5000 * time.Second), PlannedAt: monday},
		},
		{
			name:    "inside windows only",
			planner: noHeadroom,
			// Nights Mon 22-06 and Tue 22-06 before Wed noon: 16 h. 8 h of
			// work on one replica fits the first night.
			s: Situation{Now: monday, Deadline: monday.Add(48 * time.Hour), RowsLeft: 288_000, RowsPerSecondPerReplica: 10,
				Lease: serving.Lease{MaxReplicas: 4, MaxReplicaHours: 100, Windows: nightly}},
			want: serving.JobPlan{Replicas: 1, RowsPerSecondPerReplica: 10, ReplicaHours: 8,
				Finish: monday.Add(18 * time.Hour), PlannedAt: monday},
		},
		{
			name:    "windows: more replicas when one night is not enough",
			planner: noHeadroom,
			// 16.67 h of work: 2 replicas, 8.33 h each: the second night,
			// 20 minutes in.
			s: Situation{Now: monday, Deadline: monday.Add(48 * time.Hour), RowsLeft: 600_000, RowsPerSecondPerReplica: 10,
				Lease: serving.Lease{MaxReplicas: 4, MaxReplicaHours: 100, Windows: nightly}},
			want: serving.JobPlan{Replicas: 2, RowsPerSecondPerReplica: 10, ReplicaHours: 600_000.0 / 10 / 3600,
				Finish: monday.Add(34*time.Hour + 20*time.Minute), PlannedAt: monday},
		},
		{
			name:    "windows: each night's start costs",
			planner: Planner{Headroom: -1, StartCost: 30 * time.Minute},
			// 8 h of work on one replica: 7.5 h the first night after its
			// start, 0.5 h the next after another: 9 replica-hours.
			s: Situation{Now: monday, Deadline: monday.Add(48 * time.Hour), RowsLeft: 288_000, RowsPerSecondPerReplica: 10,
				Lease: serving.Lease{MaxReplicas: 4, MaxReplicaHours: 100, Windows: nightly}},
			want: serving.JobPlan{Replicas: 1, RowsPerSecondPerReplica: 10, ReplicaHours: 9,
				Finish: monday.Add(35 * time.Hour), PlannedAt: monday},
		},
		{
			name:    "windows: none before the deadline",
			planner: noHeadroom,
			s: Situation{Now: monday, Deadline: monday.Add(6 * time.Hour), RowsLeft: 1000, RowsPerSecondPerReplica: 10,
				Lease: serving.Lease{MaxReplicas: 4, MaxReplicaHours: 100, Windows: nightly}},
			refusal: &serving.JobRefusal{Rows: 1000, RowsPerSecondPerReplica: 10, Deadline: monday.Add(6 * time.Hour),
				AllowedReplicas: 4, NeededReplicaHours: 1000.0 / 10 / 3600, AllowedReplicaHours: 100},
			msg: []string{"no allowed time is left before the deadline"},
		},
		{
			name:    "deadline passed",
			planner: noHeadroom,
			s: Situation{Now: monday, Deadline: monday.Add(-time.Hour), RowsLeft: 10, RowsPerSecondPerReplica: 10,
				Lease: serving.Lease{MaxReplicas: 4, MaxReplicaHours: 100}},
			refusal: &serving.JobRefusal{Rows: 10, RowsPerSecondPerReplica: 10, Deadline: monday.Add(-time.Hour),
				AllowedReplicas: 4, NeededReplicaHours: 1.0 / 3600, AllowedReplicaHours: 100},
			msg: []string{"no allowed time is left"},
		},
		{
			name: "nothing left",
			s: Situation{Now: monday, Deadline: monday.Add(time.Hour), RowsPerSecondPerReplica: 10,
				Lease: serving.Lease{MaxReplicas: 4, MaxReplicaHours: 1}},
			want: serving.JobPlan{RowsPerSecondPerReplica: 10, Finish: monday, PlannedAt: monday},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.planner.Plan(tt.s)
			if tt.refusal == nil {
				if err != nil {
					t.Fatalf("Plan = %v; want a plan", err)
				}
				if diff := cmp.Diff(tt.want, got, approx); diff != "" {
					t.Errorf("Plan (-want +got):\n%s", diff)
				}
				return
			}
			var r *serving.JobRefusal
			if !errors.As(err, &r) {
				t.Fatalf("Plan = %+v, %v; want a refusal", got, err)
			}
			if diff := cmp.Diff(tt.refusal, r, approx); diff != "" {
				t.Errorf("refusal (-want +got):\n%s", diff)
			}
			for _, m := range tt.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("refusal says %q; want %q in it", err, m)
				}
			}
		})
	}
}

func TestPlanBadRate(t *testing.T) {
	for _, rate := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		_, err := Planner{}.Plan(Situation{Now: monday, Deadline: monday.Add(time.Hour), RowsLeft: 10, RowsPerSecondPerReplica: rate,
			Lease: serving.Lease{MaxReplicas: 1, MaxReplicaHours: 1}})
		var r *serving.JobRefusal
		if err == nil || errors.As(err, &r) {
			t.Errorf("Plan at %g rows/s = %v; want an error that is no refusal", rate, err)
		}
	}
}

func TestReplan(t *testing.T) {
	p := Planner{Headroom: -1}
	lease := serving.Lease{MaxReplicas: 8, MaxReplicaHours: 10}
	deadline := monday.Add(2 * time.Hour)
	// The plan: 2 replicas at 10 rows/s for 100000 rows, made at monday.
	old := serving.JobPlan{Replicas: 2, RowsPerSecondPerReplica: 10, ReplicaHours: 100_000.0 / 10 / 3600,
		Finish: monday.Add(5000 * time.Second), PlannedAt: monday}
	at := monday.Add(10 * time.Minute)
	tests := []struct {
		name     string
		lease    serving.Lease
		pr       Progress
		want     serving.JobPlan
		changed  bool
		warnings []string
	}{
		{"no rate yet", lease, Progress{Now: at, RowsLeft: 88_000}, old, false, nil},
		{"within the drift", lease, Progress{Now: at, RowsLeft: 88_000, RowsPerSecondPerReplica: 9}, old, false, nil},
		{
			// 5 rows/s: 88000 rows in 6600 s of the 6600 left need 2.67,
			// so 3 replicas.
			"slower: more replicas", lease, Progress{Now: at, RowsLeft: 88_000, RowsPerSecondPerReplica: 5},
			serving.JobPlan{Replicas: 3, RowsPerSecondPerReplica: 5, ReplicaHours: 88_000.0 / 5 / 3600,
				Finish: at.Add(secs(88_000.0 / 15)), PlannedAt: at}, true, nil,
		},
		{
			"faster: fewer replicas", lease, Progress{Now: at, RowsLeft: 88_000, RowsPerSecondPerReplica: 20},
			serving.JobPlan{Replicas: 1, RowsPerSecondPerReplica: 20, ReplicaHours: 88_000.0 / 20 / 3600,
				Finish: at.Add(4400 * time.Second), PlannedAt: at}, true, nil,
		},
		{
			// 1 row/s: 88000 rows in 6600 s need 14 replicas; 8 allowed
			// finish in 11000 s.
			"too slow for the lease: warn, run at the most", lease, Progress{Now: at, RowsLeft: 88_000, RowsPerSecondPerReplica: 1},
			serving.JobPlan{Replicas: 8, RowsPerSecondPerReplica: 1, ReplicaHours: 88_000.0 / 3600,
				Finish: at.Add(11000 * time.Second), PlannedAt: at}, true,
			[]string{"deadline at risk: at 1 rows/s per replica the 88000 rows left need 14 replicas; the lease allows 8: predicted finish 2026-03-02T15:13:20Z, deadline 2026-03-02T14:00:00Z",
				"budget at risk: the 88000 rows left need 24.44 replica-hours on 8 replicas; 10.00 of 10.00 are left: the job fails when they are spent"},
		},
		{
			"budget short: warn, keep the count", serving.Lease{MaxReplicas: 8, MaxReplicaHours: 3}, Progress{Now: at, RowsLeft: 88_000, RowsPerSecondPerReplica: 10, UsedReplicaHours: 1},
			serving.JobPlan{Replicas: 2, RowsPerSecondPerReplica: 10, ReplicaHours: 88_000.0 / 10 / 3600,
				Finish: at.Add(4400 * time.Second), PlannedAt: at}, false,
			[]string{"budget at risk: the 88000 rows left need 2.44 replica-hours on 2 replicas; 2.00 of 3.00 are left: the job fails when they are spent"},
		},
		{
			"GPU budget short: warn, keep the count", serving.Lease{MaxReplicas: 8, MaxReplicaHours: 10, MaxGPUHours: 10},
			Progress{Now: at, RowsLeft: 88_000, RowsPerSecondPerReplica: 10, UsedReplicaHours: 1, GPUsPerReplica: 4, UsedGPUHours: 4},
			serving.JobPlan{Replicas: 2, RowsPerSecondPerReplica: 10, ReplicaHours: 88_000.0 / 10 / 3600,
				Finish: at.Add(4400 * time.Second), PlannedAt: at}, false,
			[]string{"GPU budget at risk: the 88000 rows left need 9.78 GPU-hours on 2 replicas of 4 GPUs; 6.00 of 10.00 are left: the job fails when they are spent"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Replan(old, deadline, tt.lease, tt.pr)
			if diff := cmp.Diff(tt.want, got.Plan, approx); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			if got.Changed != tt.changed {
				t.Errorf("changed = %v; want %v", got.Changed, tt.changed)
			}
			if diff := cmp.Diff(tt.warnings, got.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpenAt(t *testing.T) {
	tests := []struct {
		now  time.Time
		open bool
		next time.Time
	}{
		{monday, false, monday.Add(10 * time.Hour)},
		{monday.Add(10 * time.Hour), true, time.Time{}},
		{monday.Add(17 * time.Hour), true, time.Time{}},
		{monday.Add(18 * time.Hour), false, monday.Add(34 * time.Hour)},
	}
	for _, tt := range tests {
		open, next := openAt(nightly, tt.now)
		if open != tt.open || !next.Equal(tt.next) {
			t.Errorf("openAt(%v) = %v, %v; want %v, %v", tt.now, open, next, tt.open, tt.next)
		}
	}
	if open, _ := openAt(nil, monday); !open {
		t.Error("openAt without windows = closed; want open")
	}
}
