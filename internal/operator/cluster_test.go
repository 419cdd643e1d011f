package operator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const gpu corev1.ResourceName = "nvidia.com/gpu"

// TestLifecycle follows one ModelDeployment on GPU nodes through its life:
// created at zero, scaled by kubectl, scaled 0→N→0 by the autoscaler on
// reported demand, then deleted.
func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	gpuTaint := corev1.Taint{Key: string(gpu), Value: "present", Effect: corev1.TaintEffectNoSchedule}
	gpuNodes := e.c.CreateNodes(t, 2, kubetest.NodeSpec{
		Prefix: "gpu-" + e.ns, GPUs: 2,
		Labels: map[string]string{"accelerator": "h100"},
		Taints: []corev1.Taint{gpuTaint},
	})
	e.c.CreateNodes(t, 1, kubetest.NodeSpec{Prefix: "cpu-" + e.ns})

	md := e.echoMD("echo")
	md.Spec.Template = serving.Template{
		Image: "ebb:gpu",
		Resources: serving.ResourceRequirements{
			Limits: serving.ResourceList{serving.ResourceName(gpu): resource.MustParse("1")},
		},
		NodeSelector: map[string]string{"accelerator": "h100"},
		Tolerations: []serving.Toleration{{
			Key: string(gpu), Operator: serving.TolerationOpExists, Effect: serving.TaintEffectNoSchedule,
		}},
	}
	e.create(t, md)
	op := e.startOperator(t)

	t.Run("CreatedAtZero", func(t *testing.T) {
		got := e.waitStatus(t, "echo", 30*time.Second, "ready at zero", func(st v1alpha1.ModelDeploymentStatus) bool {
			return meta.IsStatusConditionTrue(st.Conditions, operator.ConditionReady) && st.ObservedGeneration == 1
		})
		if c := meta.FindStatusCondition(got.Status.Conditions, operator.ConditionReady); c.Reason != "ScaledToZero" {
			t.Errorf("Ready reason %q, want ScaledToZero", c.Reason)
		}
		if !slices.Contains(got.Finalizers, operator.Finalizer) {
			t.Errorf("finalizers %v lack %s", got.Finalizers, operator.Finalizer)
		}
		if got.Status.Selector != operator.LabelDeployment+"=echo" {
			t.Errorf("selector %q", got.Status.Selector)
		}
		var svc corev1.Service
		waitFor(t, 10*time.Second, "headless Service", func() (bool, string) {
			err := e.cl.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: "echo"}, &svc)
			return err == nil, fmt.Sprint(err)
		})
		if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.Spec.Selector[operator.LabelDeployment] != "echo" || !metav1.IsControlledBy(&svc, got) {
			t.Errorf("Service: clusterIP %q selector %v owners %v", svc.Spec.ClusterIP, svc.Spec.Selector, svc.OwnerReferences)
		}
		if n := len(e.pods(t, "echo")); n != 0 {
			t.Errorf("%d pods at zero", n)
		}
	})

	t.Run("KubectlScale", func(t *testing.T) {
		e.kubectl(t, "scale", "modeldeployment/echo", "--replicas=2")
		got := e.waitStatus(t, "echo", 60*time.Second, "2 ready", func(st v1alpha1.ModelDeploymentStatus) bool {
			return st.ReadyReplicas == 2 && st.Replicas == 2 && st.ObservedGeneration == 2
		})
		pods := e.pods(t, "echo")
		if len(pods) != 2 {
			t.Fatalf("%d pods, want 2", len(pods))
		}
		for _, p := range pods {
			c := p.Spec.Containers[0]
			q := c.Resources.Limits[gpu]
			if q.Value() != 1 || c.Image != "ebb:gpu" || !slices.Contains(gpuNodes, p.Spec.NodeName) ||
				p.Spec.NodeSelector["accelerator"] != "h100" || !metav1.IsControlledBy(&p, got) {
				t.Errorf("pod %s: gpu %v image %q node %q (want one of %v) selector %v owners %v",
					p.Name, q.String(), c.Image, p.Spec.NodeName, gpuNodes, p.Spec.NodeSelector, p.OwnerReferences)
			}
		}
		for _, rs := range got.Status.ReplicaStatuses {
			var phases []string
			for _, ph := range rs.ColdStart {
				phases = append(phases, ph.Name)
			}
			if rs.State != "ready" || !slices.Contains(phases, "ready") {
				t.Errorf("replica %s: state %q cold start %v", rs.ID, rs.State, phases)
			}
		}
		// The Service has its EndpointSlice, labelled for gateways. (Its
		// addresses stay empty here: the API server refuses the test
		// cluster's loopback pod IPs in EndpointSlices.)
		waitFor(t, 30*time.Second, "the Service's EndpointSlice", func() (bool, string) {
			n := endpointSlices(t, e, "echo")
			return n > 0, fmt.Sprintf("%d EndpointSlices", n)
		})
		out := e.kubectl(t, "get", "modeldeployment", "echo")
		if !strings.Contains(out, "READY") || !strings.Contains(out, "DESIRED") {
			t.Errorf("kubectl get has no printer columns:\n%s", out)
		}
		e.kubectl(t, "scale", "modeldeployment/echo", "--replicas=0")
		e.waitStatus(t, "echo", 60*time.Second, "scaled to zero", func(st v1alpha1.ModelDeploymentStatus) bool {
			return st.Replicas == 0 && st.DesiredReplicas == 0
		})
		waitFor(t, 30*time.Second, "pods gone", func() (bool, string) {
			n := len(e.pods(t, "echo"))
			return n == 0, fmt.Sprintf("%d pods", n)
		})
	})

	t.Run("AutoscaleOnDemand", func(t *testing.T) {
		// Give the autoscaler its range back.
		patch := []byte(`{"spec":{"replicas":null}}`)
		if err := e.cl.Patch(context.Background(), e.getMD(t, "echo"), client.RawPatch("application/merge-patch+json", patch)); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(op.op.Handler())
		defer srv.Close()
		report := func(inFlight int) {
			body, _ := json.Marshal(operator.DemandReport{Gateway: "test-gw", Deployments: map[string]operator.GatewayDemand{
				"echo": {InFlight: inFlight, Concurrency: float64(inFlight), Requests: inFlight},
			}})
			resp, err := http.Post(srv.URL+operator.DemandPath, "application/json", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		}
		// A wake-up with held requests starts the first replica at once.
		resp, err := http.Post(srv.URL+operator.WakePath+"echo", "application/json", strings.NewReader(`{"gateway":"test-gw","inFlight":1}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// Then sustained demand of 3 in flight (target 1 per replica).
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			for {
				report(3)
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
		e.waitStatus(t, "echo", 60*time.Second, "3 ready under load", func(st v1alpha1.ModelDeploymentStatus) bool {
			return st.ReadyReplicas == 3 && st.DesiredReplicas == 3
		})
		close(stop)
		<-done
		report(0)
		e.waitStatus(t, "echo", 60*time.Second, "back to zero when idle", func(st v1alpha1.ModelDeploymentStatus) bool {
			return st.Replicas == 0 && st.DesiredReplicas == 0
		})
		waitFor(t, 30*time.Second, "pods gone", func() (bool, string) {
			n := len(e.pods(t, "echo"))
			return n == 0, fmt.Sprintf("%d pods", n)
		})
		evs := e.events(t, "echo")
		var up, down bool
		for _, ev := range evs {
			up = up || strings.HasPrefix(ev, "ScaledUp: desired replicas 0 → ")
			down = down || strings.HasPrefix(ev, "ScaledDown: ") && strings.Contains(ev, "→ 0")
		}
		if !up || !down {
			t.Errorf("events lack a scale-up from 0 and a scale-down to 0:\n%s", strings.Join(evs, "\n"))
		}
	})

	t.Run("DeleteCleansUp", func(t *testing.T) {
		e.kubectl(t, "scale", "modeldeployment/echo", "--replicas=2")
		e.waitStatus(t, "echo", 60*time.Second, "2 ready", func(st v1alpha1.ModelDeploymentStatus) bool {
			return st.ReadyReplicas == 2
		})
		if err := e.cl.Delete(context.Background(), e.getMD(t, "echo")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "ModelDeployment, pods and Service gone", func() (bool, string) {
			mdErr := e.cl.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: "echo"}, &v1alpha1.ModelDeployment{})
			svcErr := e.cl.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: "echo"}, &corev1.Service{})
			n := len(e.pods(t, "echo"))
			return apierrors.IsNotFound(mdErr) && apierrors.IsNotFound(svcErr) && n == 0,
				fmt.Sprintf("ModelDeployment: %v, Service: %v, %d pods", mdErr, svcErr, n)
		})
	})
}

// endpointSlices counts the EndpointSlices labelled for a deployment.
func endpointSlices(t *testing.T, e *env, deployment string) int {
	t.Helper()
	var list discoveryv1.EndpointSliceList
	if err := e.cl.List(context.Background(), &list, client.InNamespace(e.ns), client.MatchingLabels{operator.LabelDeployment: deployment}); err != nil {
		t.Fatal(err)
	}
	return len(list.Items)
}

// TestInvalidSpecFails checks that a spec the control loop refuses is
// reported in the status instead of being run.
func TestInvalidSpecFails(t *testing.T) {
	e := newEnv(t)
	md := e.echoMD("bad")
	md.Spec.Engine = "trees" // and no model
	e.create(t, md)
	e.startOperator(t)
	got := e.waitStatus(t, "bad", 30*time.Second, "Failed", func(st v1alpha1.ModelDeploymentStatus) bool {
		return meta.IsStatusConditionTrue(st.Conditions, operator.ConditionFailed)
	})
	c := meta.FindStatusCondition(got.Status.Conditions, operator.ConditionFailed)
	if c.Reason != "InvalidSpec" || !strings.Contains(c.Message, "spec.model") {
		t.Errorf("Failed condition %+v, want InvalidSpec naming spec.model", c)
	}
	if diff := cmp.Diff(0, len(e.pods(t, "bad"))); diff != "" {
		t.Errorf("pods (-want +got):\n%s", diff)
	}
}
