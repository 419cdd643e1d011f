package jobs

import (
	"fmt"
	"math"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// Planner sizes a job's pool. It is a pure function of what it is given
// (the time included): the same situation always gets the same plan, so
// a recorded decision replays.
type Planner struct {
	// Headroom is the share of the measured rate the plan does not count
	// on, so that a little drift does not miss the deadline: 0.1 plans
	// with 90% of it. Default DefaultHeadroom; negative means none.
	Headroom float64
	// StartCost is what starting replicas costs, in time before they
	// serve and in replica-hours: paid once per allowed window the work
	// enters. Default 0.
	StartCost time.Duration
	// Drift is how far (a share) the measured rate may move from the
	// plan's before Replan sizes the pool again. Default DefaultDrift.
	Drift float64
}

// Planner defaults.
const (
	DefaultHeadroom = 0.1
	DefaultDrift    = 0.2
)

// maxSearch bounds the replica counts the planner tries when it reports
// how many a refused job would need.
const maxSearch = 100_000

// Situation is what a plan is made from.
type Situation struct {
	Now      time.Time
	Deadline time.Time
	// RowsLeft is what remains to be done.
	RowsLeft int64
	// RowsPerSecondPerReplica is the measured throughput of one replica.
	RowsPerSecondPerReplica float64
	Lease                   serving.Lease
	// UsedReplicaHours is what the job has spent of Lease.MaxReplicaHours.
	UsedReplicaHours float64
	// GPUsPerReplica is what one replica of the deployment asks for
	// (serving.Spec.GPUs); with Lease.MaxGPUHours above 0 the plan's
	// replica-hours × GPUsPerReplica are bounded by what is left of it.
	GPUsPerReplica int64
	// UsedGPUHours is what the job has spent of Lease.MaxGPUHours.
	UsedGPUHours float64
}

// gpuBound reports whether the lease bounds GPU-hours for a deployment
// of gpus GPUs per replica, and what is left of them after used.
func gpuBound(l serving.Lease, gpus int64, used float64) (left float64, ok bool) {
	if l.MaxGPUHours <= 0 || gpus <= 0 {
		return 0, false
	}
	return l.MaxGPUHours - used, true
}

func (p Planner) headroom() float64 {
	switch {
	case p.Headroom < 0:
		return 0
	case p.Headroom == 0:
		return DefaultHeadroom
	}
	return min(p.Headroom, 0.9)
}

func (p Planner) drift() float64 {
	if p.Drift <= 0 {
		return DefaultDrift
	}
	return p.Drift
}

// sizing is what n replicas at a rate do with the rows left.
type sizing struct {
	finish time.Time
	hours  float64
	ok     bool // done before the horizon
}

// size predicts the finish and replica-hours of the rows left on n
// replicas at the planning rate, in the allowed times before horizon.
func (p Planner) size(s Situation, n int32, horizon time.Time) sizing {
	rate := s.RowsPerSecondPerReplica * (1 - p.headroom())
	work := time.Duration(float64(s.RowsLeft) / (float64(n) * rate) * float64(time.Second))
	if work < 0 || float64(s.RowsLeft)/(float64(n)*rate) > float64(math.MaxInt64/2)/float64(time.Second) {
		return sizing{}
	}
	finish, starts, ok := walk(s.Lease.Windows, s.Now, horizon, work, p.StartCost)
	running := work + time.Duration(starts)*p.StartCost
	return sizing{finish: finish, hours: float64(n) * running.Hours(), ok: ok}
}

// Plan chooses the fewest replicas that finish the rows left by the
// deadline (fewer replicas start fewer times, so the fewest replica-hours
// too), or refuses with a *serving.JobRefusal that says what the job needs
// against what its lease allows: replicas, replica-hours, or allowed time
// before the deadline.
func (p Planner) Plan(s Situation) (serving.JobPlan, error) {
	plan := serving.JobPlan{RowsPerSecondPerReplica: s.RowsPerSecondPerReplica, PlannedAt: s.Now, Finish: s.Now}
	if s.RowsLeft <= 0 {
		return plan, nil
	}
	if !(s.RowsPerSecondPerReplica > 0) || math.IsInf(s.RowsPerSecondPerReplica, 0) {
		return serving.JobPlan{}, fmt.Errorf("cannot plan with a rate of %g rows/s per replica", s.RowsPerSecondPerReplica)
	}
	allowedTime := allowedDuration(s.Lease.Windows, s.Now, s.Deadline)
	refusal := &serving.JobRefusal{
		Rows: s.RowsLeft, RowsPerSecondPerReplica: s.RowsPerSecondPerReplica, Deadline: s.Deadline,
		AllowedHours: allowedTime.Hours(), AllowedReplicas: s.Lease.MaxReplicas,
		AllowedReplicaHours: max(s.Lease.MaxReplicaHours-s.UsedReplicaHours, 0),
	}
	gpuLeft, gpus := gpuBound(s.Lease, s.GPUsPerReplica, s.UsedGPUHours)
	if gpus {
		refusal.GPUsPerReplica, refusal.AllowedGPUHours = s.GPUsPerReplica, max(gpuLeft, 0)
	}
	rate := s.RowsPerSecondPerReplica * (1 - p.headroom())
	// Without start costs, n replicas need rows/(n × rate) of allowed
	// time: start from that bound and step up.
	first := 1.0
	if allowedTime > 0 {
		first = math.Max(1, math.Ceil(float64(s.RowsLeft)/(rate*allowedTime.Seconds())))
	}
	var need int32
	var best sizing
	if allowedTime > 0 && first <= maxSearch {
		for n := int32(first); n <= maxSearch; n++ {
			if z := p.size(s, n, s.Deadline); z.ok {
				need, best = n, z
				break
			}
			if n >= s.Lease.MaxReplicas && n-int32(first) > 64 {
				break // far past what the lease allows: say so without the count
			}
		}
	} else if allowedTime > 0 {
		need = maxSearch // more than any lease
	}
	refusal.NeededReplicas = need
	if need == 0 || need > s.Lease.MaxReplicas {
		// Report the replica-hours the rows take at any count.
		refusal.NeededReplicaHours = float64(s.RowsLeft) / rate / 3600
		if gpus {
			refusal.NeededGPUHours = refusal.NeededReplicaHours * float64(s.GPUsPerReplica)
		}
		if need == 0 && allowedTime > 0 {
			refusal.NeededReplicas = s.Lease.MaxReplicas + 1
			if first > float64(refusal.NeededReplicas) && first <= math.MaxInt32 {
				refusal.NeededReplicas = int32(first)
			}
		}
		return serving.JobPlan{}, refusal
	}
	refusal.NeededReplicaHours = best.hours
	if gpus {
		refusal.NeededGPUHours = best.hours * float64(s.GPUsPerReplica)
	}
	if best.hours > refusal.AllowedReplicaHours || (gpus && refusal.NeededGPUHours > refusal.AllowedGPUHours) {
		return serving.JobPlan{}, refusal
	}
	plan.Replicas, plan.Finish, plan.ReplicaHours = need, best.finish, best.hours
	return plan, nil
}

// Progress is where a running job stands, for Replan.
type Progress struct {
	Now      time.Time
	RowsLeft int64
	// RowsPerSecondPerReplica is the rate measured lately; 0 when not
	// known yet.
	RowsPerSecondPerReplica float64
	UsedReplicaHours        float64
	// GPUsPerReplica and UsedGPUHours are as in Situation.
	GPUsPerReplica int64
	UsedGPUHours   float64
}

// Replanned is Replan's decision.
type Replanned struct {
	// Plan is the plan to follow: the old one when nothing changed.
	Plan    serving.JobPlan
	Changed bool
	// Warnings say what is at risk, with the numbers; empty when the
	// plan still meets the deadline within the lease.
	Warnings []string
}

// Replan checks a running job's plan against its measured rate: when the
// rate has drifted from the plan's by more than Drift, or the plan's
// replicas no longer finish by the deadline, it sizes the pool again. When
// no size meets the deadline within the lease it warns at once (long before
// the deadline passes) and runs on at the best the lease allows: every
// replica it may have, for the rows it can still do.
func (p Planner) Replan(old serving.JobPlan, deadline time.Time, lease serving.Lease, pr Progress) Replanned {
	keep := Replanned{Plan: old}
	if pr.RowsPerSecondPerReplica <= 0 || pr.RowsLeft <= 0 || old.Replicas <= 0 {
		return keep
	}
	s := Situation{Now: pr.Now, Deadline: deadline, RowsLeft: pr.RowsLeft, RowsPerSecondPerReplica: pr.RowsPerSecondPerReplica,
		Lease: lease, UsedReplicaHours: pr.UsedReplicaHours, GPUsPerReplica: pr.GPUsPerReplica, UsedGPUHours: pr.UsedGPUHours}
	drift := math.Abs(pr.RowsPerSecondPerReplica-old.RowsPerSecondPerReplica) / old.RowsPerSecondPerReplica
	current := p.size(s, old.Replicas, deadline)
	left := lease.MaxReplicaHours - pr.UsedReplicaHours
	gpuLeft, gpus := gpuBound(lease, pr.GPUsPerReplica, pr.UsedGPUHours)
	gpuFits := func(hours float64) bool { return !gpus || hours*float64(pr.GPUsPerReplica) <= gpuLeft }
	if drift <= p.drift() && current.ok && current.hours <= left && gpuFits(current.hours) {
		return keep
	}
	plan, err := p.Plan(s)
	if err == nil {
		return Replanned{Plan: plan, Changed: plan.Replicas != old.Replicas}
	}
	refusal, ok := err.(*serving.JobRefusal)
	if !ok {
		return keep
	}
	// Best effort: the most the lease allows while time is the problem,
	// the current count while only the budget is.
	n := old.Replicas
	if refusal.NeededReplicas == 0 || refusal.NeededReplicas > lease.MaxReplicas {
		n = lease.MaxReplicas
	}
	far := deadline.Add(max(deadline.Sub(pr.Now), 0)*4 + 31*24*time.Hour)
	z := p.size(s, n, far)
	best := serving.JobPlan{Replicas: n, RowsPerSecondPerReplica: pr.RowsPerSecondPerReplica, ReplicaHours: z.hours, Finish: z.finish, PlannedAt: pr.Now}
	var warnings []string
	if refusal.NeededReplicas == 0 || refusal.NeededReplicas > lease.MaxReplicas || refusal.AllowedHours <= 0 {
		finish := "not within a month of it"
		if z.ok {
			finish = z.finish.UTC().Format(time.RFC3339)
		}
		warnings = append(warnings, fmt.Sprintf("deadline at risk: at %.4g rows/s per replica the %d rows left need %s; the lease allows %d: predicted finish %s, deadline %s",
			pr.RowsPerSecondPerReplica, pr.RowsLeft, neededText(refusal), lease.MaxReplicas, finish, deadline.UTC().Format(time.RFC3339)))
	}
	if z.hours > left {
		warnings = append(warnings, fmt.Sprintf("budget at risk: the %d rows left need %.2f replica-hours on %d replicas; %.2f of %.2f are left: the job fails when they are spent",
			pr.RowsLeft, z.hours, n, max(left, 0), lease.MaxReplicaHours))
	}
	if !gpuFits(z.hours) {
		warnings = append(warnings, fmt.Sprintf("GPU budget at risk: the %d rows left need %.2f GPU-hours on %d replicas of %d GPUs; %.2f of %.2f are left: the job fails when they are spent",
			pr.RowsLeft, z.hours*float64(pr.GPUsPerReplica), n, pr.GPUsPerReplica, max(gpuLeft, 0), lease.MaxGPUHours))
	}
	return Replanned{Plan: best, Changed: n != old.Replicas, Warnings: warnings}
}

func neededText(r *serving.JobRefusal) string {
	if r.NeededReplicas == 0 || r.AllowedHours <= 0 {
		return "more time than the windows leave before the deadline"
	}
	return fmt.Sprintf("%d replicas", r.NeededReplicas)
}
