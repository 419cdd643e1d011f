package operator_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/operator"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// podCensus watches a deployment's pods through the API server and records
// the most that were alive (created and not terminating) at once, and how
// many were created in all.
type podCensus struct {
	mu      sync.Mutex
	live    map[string]bool
	created map[string]bool
	most    int
}

func (e *env) watchPods(t *testing.T, deployment string) *podCensus {
	t.Helper()
	w, err := e.cl.(client.WithWatch).Watch(context.Background(), &corev1.PodList{},
		client.InNamespace(e.ns), client.MatchingLabels{operator.LabelDeployment: deployment})
	if err != nil {
		t.Fatal(err)
	}
	c := &podCensus{live: map[string]bool{}, created: map[string]bool{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			c.mu.Lock()
			c.created[p.Name] = true
			if ev.Type == watch.Deleted || p.DeletionTimestamp != nil {
				delete(c.live, p.Name)
			} else {
				c.live[p.Name] = true
			}
			c.most = max(c.most, len(c.live))
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { w.Stop(); <-done })
	return c
}

func (c *podCensus) counts() (live, most, created int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.live), c.most, len(c.created)
}

// TestRestartCreatesNoDuplicates stops the operator in the middle of
// scaling up — pods created, not all ready — several times, each time with
// a standby operator waiting on the leader lease, and checks that there
// never are more replica pods than desired.
func TestRestartCreatesNoDuplicates(t *testing.T) {
	e := newEnv(t)
	e.c.CreateNodes(t, 2, kubetest.NodeSpec{Prefix: "n-" + e.ns})
	census := e.watchPods(t, "echo")
	md := e.echoMD("echo")
	md.Spec.Scaling.MaxReplicas = 5
	want := int32(4)
	md.Spec.Replicas = &want
	e.create(t, md)

	leader := e.startOperator(t)
	for round := range 3 {
		// Mid-reconcile: the first pod of this round exists.
		waitFor(t, 30*time.Second, fmt.Sprintf("round %d: a pod", round), func() (bool, string) {
			live, _, _ := census.counts()
			return live > 0, "no pod yet"
		})
		standby := e.startOperator(t)
		leader.stop(t)
		leader = standby
		if round == 1 {
			// Also restart once when all are up, and scale down and up
			// across it.
			e.waitStatus(t, "echo", 60*time.Second, "all ready", func(st v1alpha1.ModelDeploymentStatus) bool {
				return st.ReadyReplicas == want
			})
			e.kubectl(t, "scale", "modeldeployment/echo", "--replicas=2")
			standby := e.startOperator(t)
			leader.stop(t)
			leader = standby
			e.kubectl(t, "scale", "modeldeployment/echo", fmt.Sprintf("--replicas=%d", want))
		}
	}
	e.waitStatus(t, "echo", 90*time.Second, "all ready after the restarts", func(st v1alpha1.ModelDeploymentStatus) bool {
		return st.ReadyReplicas == want && st.Replicas == want
	})
	// Let any duplicate a confused operator would create show up.
	time.Sleep(3 * time.Second)
	live, most, created := census.counts()
	t.Logf("pods: %d live, at most %d live at once, %d created in all", live, most, created)
	if live != int(want) || most > int(want) {
		t.Errorf("%d live pods, at most %d at once; want %d and never more", live, most, want)
	}
	pods := livePods(e.pods(t, "echo"))
	if len(pods) != int(want) {
		t.Errorf("the API server lists %d live pods, want %d", len(pods), want)
	}
}
