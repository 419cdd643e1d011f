package operator_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestRolloutAndShadowConditions runs a rollout manager wired to the
// operator as the leader's is (rollout.Options.State = RolloutState): a
// rollout started, paused and aborted through it shows as the
// ModelDeployment's Rollout condition; a shadow set in the spec shows as
// its Shadow condition, which goes with spec.shadow.
func TestRolloutAndShadowConditions(t *testing.T) {
	e := newEnv(t)
	md := e.echoMD("canaried")
	md.Spec.Model = "/models/v1"
	e.create(t, md)
	op := e.startOperator(t)

	st, err := sqlite.Open(context.Background(), t.TempDir()+"/ebb.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := rollout.New(st, op.op.APIStore(), op.op.Meters(), rollout.Options{
		Every: 200 * time.Millisecond, State: op.op.RolloutState, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Run(ctx) }()

	waitRollout := func(status metav1.ConditionStatus, reason, msg string) {
		t.Helper()
		e.waitStatus(t, "canaried", 30*time.Second, "Rollout "+reason, func(st v1alpha1.ModelDeploymentStatus) bool {
			c := meta.FindStatusCondition(st.Conditions, operator.ConditionRollout)
			return c != nil && c.Status == status && c.Reason == reason && c.Message == msg
		})
	}
	if _, err := m.Start(ctx, "canaried", rollout.Request{To: "/models/v2", Steps: []int{50, 100}, Interval: serving.D(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	waitRollout(metav1.ConditionTrue, "Progressing", "canary /models/v2 at 50% (step 1 of 2)")
	if _, err := m.Pause(ctx, "canaried", "alice"); err != nil {
		t.Fatal(err)
	}
	waitRollout(metav1.ConditionTrue, "Paused", "canary /models/v2 at 50% (step 1 of 2); paused: alice")
	if _, err := m.Abort(ctx, "canaried", "bob"); err != nil {
		t.Fatal(err)
	}
	waitRollout(metav1.ConditionFalse, "Aborted", "canary /models/v2: aborted: bob")

	setShadow := func(sh *serving.Shadow) {
		t.Helper()
		cur := e.getMD(t, "canaried")
		patched := cur.DeepCopy()
		patched.Spec.Shadow = sh
		if err := e.cl.Patch(context.Background(), patched, client.MergeFrom(cur)); err != nil {
			t.Fatalf("set spec.shadow: %v", err)
		}
	}
	setShadow(&serving.Shadow{Model: "/models/v3", Percent: 10})
	e.waitStatus(t, "canaried", 30*time.Second, "Shadow Mirroring", func(st v1alpha1.ModelDeploymentStatus) bool {
		c := meta.FindStatusCondition(st.Conditions, operator.ConditionShadow)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == operator.ReasonMirroring &&
			c.Message == "mirroring 10% of requests to /models/v3; verdict pending: no gateway reported it yet: its figures come once the deployment serves requests"
	})
	setShadow(nil)
	got := e.waitStatus(t, "canaried", 30*time.Second, "no Shadow condition", func(st v1alpha1.ModelDeploymentStatus) bool {
		return meta.FindStatusCondition(st.Conditions, operator.ConditionShadow) == nil
	})
	// The ended rollout's condition stays.
	if c := meta.FindStatusCondition(got.Status.Conditions, operator.ConditionRollout); c == nil || c.Reason != "Aborted" {
		t.Errorf("Rollout condition after the shadow went: %s", fmt.Sprint(c))
	}
}
