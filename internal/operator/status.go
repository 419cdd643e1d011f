package operator

import (
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/serving"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types of a ModelDeployment; Rollout and Shadow are in
// conditions.go.
const (
	// ConditionReady is True when the deployment can serve: a replica is
	// ready, or it is scaled to zero and the next request starts one. A
	// deployment its owner pinned at zero (spec.replicas: 0) is not ready:
	// requests are refused.
	ConditionReady = "Ready"
	// ConditionScaling is True while replicas start or stop to reach the
	// desired count.
	ConditionScaling = "Scaling"
	// ConditionFailed is True when the spec is invalid or replicas fail to
	// start; held requests then fail fast with the message.
	ConditionFailed = "Failed"
)

// observation is what the operator knows about one ModelDeployment.
type observation struct {
	// control is the control loop's status of the deployment.
	control serving.Status
	// seen says whether the loop has read the deployment, generation
	// which generation it read, and invalid why it refused the spec.
	seen       bool
	generation int64
	invalid    string
	// rollout is the deployment's latest canary rollout as the rollout
	// manager reported it; nil when it reported none (a leader before its
	// first pass): the Rollout condition then stays as it is.
	rollout *rollout.Status
	// shadow is what the gateways compared of spec.shadow, as the Shadow
	// condition shows it (shadowFigures).
	shadow shadowView
}

// desiredStatus returns md's status for what the operator observes. It
// starts from md's current conditions, so a condition's transition time
// only moves when its status changes.
func desiredStatus(md *v1alpha1.ModelDeployment, o observation, now time.Time) v1alpha1.ModelDeploymentStatus {
	st := v1alpha1.ModelDeploymentStatus{
		Status:             o.control,
		ObservedGeneration: md.Status.ObservedGeneration,
		Selector:           LabelDeployment + "=" + md.Name,
	}
	st.ReplicaStatuses = append([]serving.ReplicaStatus(nil), o.control.ReplicaStatuses...)
	if o.seen {
		st.ObservedGeneration = o.generation
	}
	if o.invalid != "" {
		st.Reason = "invalid spec: " + o.invalid
	}
	for _, c := range md.Status.Conditions {
		st.Conditions = append(st.Conditions, *c.DeepCopy())
	}
	set := func(typ string, ok bool, reason, msg string) {
		setCondition(&st.Conditions, typ, ok, reason, msg, st.ObservedGeneration, now)
	}
	c := o.control
	failing := c.Failure != ""
	switch {
	case o.invalid != "":
		set(ConditionFailed, true, "InvalidSpec", st.Reason)
	case failing:
		set(ConditionFailed, true, "ReplicasFailing", c.Reason)
	default:
		set(ConditionFailed, false, "NoFailure", "")
	}
	switch {
	case o.invalid != "":
		set(ConditionReady, false, "InvalidSpec", "fix the spec: "+o.invalid)
	case c.ReadyReplicas > 0:
		set(ConditionReady, true, "ReplicasReady", fmt.Sprintf("%d of %d replicas ready", c.ReadyReplicas, c.DesiredReplicas))
	case failing:
		set(ConditionReady, false, "ReplicasFailing", c.Reason)
	case md.Spec.ScaledToZero():
		set(ConditionReady, false, "ScaledToZeroByOwner", "scaled to zero by its owner (spec.replicas is 0): requests are refused and start nothing; remove spec.replicas to autoscale, or set it above 0")
	case c.DesiredReplicas == 0:
		set(ConditionReady, true, "ScaledToZero", "scaled to zero: the next request starts a replica")
	default:
		set(ConditionReady, false, "ReplicasStarting", fmt.Sprintf("0 of %d replicas ready", c.DesiredReplicas))
	}
	switch {
	case c.ReadyReplicas < c.DesiredReplicas && o.invalid == "":
		set(ConditionScaling, true, "ScalingUp", scaleMessage(c))
	case c.Replicas > c.DesiredReplicas:
		set(ConditionScaling, true, "ScalingDown", scaleMessage(c))
	default:
		set(ConditionScaling, false, "Steady", scaleMessage(c))
	}
	setRolloutAndShadow(&st.Conditions, md.CreationTimestamp.Time, o.rollout, md.Spec.Shadow, o.shadow, st.ObservedGeneration, now)
	return st
}

func scaleMessage(c serving.Status) string {
	msg := fmt.Sprintf("%d replicas, %d ready, %d desired", c.Replicas, c.ReadyReplicas, c.DesiredReplicas)
	if c.Reason != "" {
		msg += ": " + c.Reason
	}
	return msg
}

// FailureOf returns why a ModelDeployment cannot serve, from its Failed
// condition; "" when it is not failing. Gateways fail held requests with it.
func FailureOf(md *v1alpha1.ModelDeployment) string {
	c := meta.FindStatusCondition(md.Status.Conditions, ConditionFailed)
	if c == nil || c.Status != metav1.ConditionTrue {
		return ""
	}
	if c.Message == "" {
		return c.Reason
	}
	return c.Message
}
