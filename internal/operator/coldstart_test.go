package operator_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// gpuTemplate is a replica template asking for one GPU on tainted H100
// nodes.
func gpuTemplate() serving.Template {
	return serving.Template{
		Image:             "ebb:gpu",
		Resources:         serving.ResourceRequirements{Limits: serving.ResourceList{serving.ResourceName(gpu): resource.MustParse("1")}},
		NodeSelector:      map[string]string{"accelerator": "h100"},
		Tolerations:       []serving.Toleration{{Key: string(gpu), Operator: serving.TolerationOpExists, Effect: serving.TaintEffectNoSchedule}},
		PriorityClassName: "replica-class",
		Labels:            map[string]string{"team": "a"},
	}
}

// gpuTolerations are gpuTemplate's tolerations as pods carry them.
var gpuTolerations = []corev1.Toleration{{Key: string(gpu), Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}

func TestBalloonPod(t *testing.T) {
	md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "ns"}}
	md.Spec.Template = gpuTemplate()
	md.Spec.Template.ServiceAccountName = "sa"
	tests := []struct {
		name  string
		image string // of the template
		want  string // of the balloon
	}{
		{name: "TemplateImage", image: "ebb:gpu", want: "ebb:gpu"},
		{name: "OperatorImage", image: "", want: "ebb:op"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := md.DeepCopy()
			md.Spec.Template.Image = tt.image
			pod := operator.BalloonPod(md, 1, operator.ColdStartOptions{Image: "ebb:op", WarmPoolPriorityClass: "warm"})
			if pod.Name != "m-balloon-1" || pod.Namespace != "ns" {
				t.Errorf("name %s/%s", pod.Namespace, pod.Name)
			}
			if diff := cmp.Diff(map[string]string{operator.LabelBalloon: "m", "team": "a"}, pod.Labels); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			if pod.Annotations[operator.AnnotationSpecHash] == "" {
				t.Error("no spec hash")
			}
			s := pod.Spec
			if s.PriorityClassName != "warm" || s.ServiceAccountName != "" {
				t.Errorf("priority class %q, service account %q; want warm and none", s.PriorityClassName, s.ServiceAccountName)
			}
			if diff := cmp.Diff(md.Spec.Template.NodeSelector, s.NodeSelector); diff != "" {
				t.Errorf("node selector (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(gpuTolerations, s.Tolerations); diff != "" {
				t.Errorf("tolerations (-want +got):\n%s", diff)
			}
			if len(s.Containers) != 1 {
				t.Fatalf("%d containers", len(s.Containers))
			}
			c := s.Containers[0]
			if c.Name != operator.BalloonContainer || c.Image != tt.want {
				t.Errorf("container %s image %s, want %s %s", c.Name, c.Image, operator.BalloonContainer, tt.want)
			}
			if diff := cmp.Diff([]string{"ebb", "pause"}, append(c.Command, c.Args...)); diff != "" {
				t.Errorf("command (-want +got):\n%s", diff)
			}
			if q := c.Resources.Limits[gpu]; q.Cmp(resource.MustParse("1")) != 0 {
				t.Errorf("GPU limit %v, want 1", q.String())
			}
		})
	}
	t.Run("HashFollowsTemplate", func(t *testing.T) {
		cold := operator.ColdStartOptions{WarmPoolPriorityClass: "warm"}
		a := operator.BalloonPod(md, 0, cold).Annotations[operator.AnnotationSpecHash]
		b := operator.BalloonPod(md, 1, cold).Annotations[operator.AnnotationSpecHash]
		changed := md.DeepCopy()
		changed.Spec.Template.Resources.Limits[serving.ResourceName(gpu)] = resource.MustParse("2")
		c := operator.BalloonPod(changed, 0, cold).Annotations[operator.AnnotationSpecHash]
		if a != b || a == c {
			t.Errorf("hashes: slot 0 %s, slot 1 %s, 2 GPUs %s; want the slots equal and 2 GPUs different", a, b, c)
		}
	})
}

func TestPrePullDaemonSet(t *testing.T) {
	md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "ns"}}
	md.Spec.Template = gpuTemplate()
	md.Spec.Template.ImagePullPolicy = serving.PullAlways
	ds := operator.PrePullDaemonSet(md, operator.ColdStartOptions{Image: "ebb:op", WarmPoolPriorityClass: "warm"})
	if ds.Name != "m-prepull" || ds.Namespace != "ns" {
		t.Errorf("name %s/%s", ds.Namespace, ds.Name)
	}
	sel := map[string]string{operator.LabelPrePull: "m"}
	if diff := cmp.Diff(sel, ds.Spec.Selector.MatchLabels); diff != "" {
		t.Errorf("selector (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sel, ds.Spec.Template.Labels); diff != "" {
		t.Errorf("pod labels (-want +got):\n%s", diff)
	}
	s := ds.Spec.Template.Spec
	if diff := cmp.Diff(md.Spec.Template.NodeSelector, s.NodeSelector); diff != "" {
		t.Errorf("node selector (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(gpuTolerations, s.Tolerations); diff != "" {
		t.Errorf("tolerations (-want +got):\n%s", diff)
	}
	if s.PriorityClassName != "warm" {
		t.Errorf("priority class %q", s.PriorityClassName)
	}
	type ctr struct{ Name, Image, Policy, Cmd string }
	var got []ctr
	for _, c := range append(append([]corev1.Container{}, s.InitContainers...), s.Containers...) {
		got = append(got, ctr{c.Name, c.Image, string(c.ImagePullPolicy), fmt.Sprint(append(c.Command, c.Args...))})
		if _, ok := c.Resources.Limits[gpu]; ok {
			t.Errorf("container %s asks for a GPU", c.Name)
		}
	}
	want := []ctr{
		{operator.PrePullContainer, "ebb:gpu", "Always", "[ebb --help]"},
		{operator.PrePullPauseContainer, "ebb:gpu", "Always", "[ebb pause]"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("containers (-want +got):\n%s", diff)
	}
}

// TestColdStart runs a warm pool and a pre-pull DaemonSet on a GPU node:
// balloons hold the GPUs, a replica preempts one, the pool follows
// spec.coldStart, and the DaemonSet comes and goes with prePull.
func TestColdStart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	class := &schedulingv1.PriorityClass{
		ObjectMeta:       metav1.ObjectMeta{Name: "warm-" + e.ns},
		Value:            -10,
		PreemptionPolicy: ptrTo(corev1.PreemptNever),
	}
	e.create(t, class)
	t.Cleanup(func() { _ = e.cl.Delete(context.Background(), class) })
	e.c.CreateNodes(t, 1, kubetest.NodeSpec{
		Prefix: "gpu-" + e.ns, GPUs: 2,
		Labels: map[string]string{"accelerator": "h100"},
		Taints: []corev1.Taint{{Key: string(gpu), Value: "present", Effect: corev1.TaintEffectNoSchedule}},
	})
	md := e.echoMD("warm")
	md.Spec.Template = gpuTemplate()
	md.Spec.Template.PriorityClassName = ""
	md.Spec.ColdStart = serving.ColdStart{WarmPool: 2, PrePull: true}
	e.create(t, md)
	e.startOperatorCold(t, operator.ColdStartOptions{WarmPoolPriorityClass: class.Name})
	md = e.getMD(t, "warm")

	balloons := func() []corev1.Pod {
		var list corev1.PodList
		if err := e.cl.List(ctx, &list, client.InNamespace(e.ns), client.MatchingLabels{operator.LabelBalloon: "warm"}); err != nil {
			t.Fatal(err)
		}
		out := livePods(list.Items)
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out
	}
	// waitBalloons waits for n live balloons, running ones among them.
	waitBalloons := func(t *testing.T, n, running int) []corev1.Pod {
		t.Helper()
		var pods []corev1.Pod
		waitFor(t, 60*time.Second, fmt.Sprintf("%d balloons, %d running", n, running), func() (bool, string) {
			pods = balloons()
			r := 0
			var desc []string
			for _, p := range pods {
				if p.Status.Phase == corev1.PodRunning {
					r++
				}
				desc = append(desc, fmt.Sprintf("%s:%s@%s", p.Name, p.Status.Phase, p.Spec.NodeName))
			}
			return len(pods) == n && r == running, fmt.Sprint(desc)
		})
		return pods
	}

	t.Run("WarmPool", func(t *testing.T) {
		pods := waitBalloons(t, 2, 2)
		for i, p := range pods {
			if p.Name != operator.BalloonName("warm", i) {
				t.Errorf("balloon %d named %s", i, p.Name)
			}
			if !metav1.IsControlledBy(&p, md) {
				t.Errorf("%s owners %v", p.Name, p.OwnerReferences)
			}
			if p.Spec.PriorityClassName != class.Name || p.Spec.Priority == nil || *p.Spec.Priority != -10 {
				t.Errorf("%s priority class %q priority %v", p.Name, p.Spec.PriorityClassName, p.Spec.Priority)
			}
			if q := p.Spec.Containers[0].Resources.Limits[gpu]; q.Cmp(resource.MustParse("1")) != 0 {
				t.Errorf("%s GPU limit %s", p.Name, q.String())
			}
			if _, ok := p.Labels[operator.LabelDeployment]; ok {
				t.Errorf("%s has the replica label", p.Name)
			}
		}
		if n := len(e.pods(t, "warm")); n != 0 {
			t.Errorf("%d replica pods, want 0", n)
		}
	})

	t.Run("PrePull", func(t *testing.T) {
		var ds appsv1.DaemonSet
		waitFor(t, 30*time.Second, "pre-pull DaemonSet", func() (bool, string) {
			err := e.cl.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: operator.PrePullName("warm")}, &ds)
			return err == nil, fmt.Sprint(err)
		})
		s := ds.Spec.Template.Spec
		if !metav1.IsControlledBy(&ds, md) {
			t.Errorf("owners %v", ds.OwnerReferences)
		}
		if len(s.InitContainers) != 1 || s.InitContainers[0].Image != "ebb:gpu" {
			t.Errorf("init containers %+v", s.InitContainers)
		}
		if diff := cmp.Diff(map[string]string{"accelerator": "h100"}, s.NodeSelector); diff != "" {
			t.Errorf("node selector (-want +got):\n%s", diff)
		}
		waitFor(t, 60*time.Second, "pre-pull pod scheduled on the GPU node", func() (bool, string) {
			var got appsv1.DaemonSet
			if err := e.cl.Get(ctx, client.ObjectKeyFromObject(&ds), &got); err != nil {
				return false, err.Error()
			}
			return got.Status.DesiredNumberScheduled == 1 && got.Status.CurrentNumberScheduled == 1, fmt.Sprintf("%+v", got.Status)
		})
	})

	t.Run("ReplicaPreemptsBalloon", func(t *testing.T) {
		e.kubectl(t, "scale", "modeldeployment/warm", "--replicas=1")
		e.waitStatus(t, "warm", 90*time.Second, "1 ready", func(st v1alpha1.ModelDeploymentStatus) bool {
			return st.ReadyReplicas == 1
		})
		// The preempted balloon is recreated and waits for room.
		waitBalloons(t, 2, 1)
		e.kubectl(t, "scale", "modeldeployment/warm", "--replicas=0")
		e.waitStatus(t, "warm", 60*time.Second, "0 replicas", func(st v1alpha1.ModelDeploymentStatus) bool {
			return st.Replicas == 0
		})
		waitBalloons(t, 2, 2)
	})

	t.Run("DeletedBalloonRecreated", func(t *testing.T) {
		before := balloons()
		if len(before) != 2 {
			t.Fatalf("%d balloons", len(before))
		}
		victim := before[0]
		if err := e.cl.Delete(ctx, &victim); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "balloon recreated", func() (bool, string) {
			var p corev1.Pod
			err := e.cl.Get(ctx, client.ObjectKeyFromObject(&victim), &p)
			if err != nil {
				return false, err.Error()
			}
			return p.UID != victim.UID && p.DeletionTimestamp == nil, string(p.UID)
		})
		waitBalloons(t, 2, 2)
	})

	t.Run("Off", func(t *testing.T) {
		md := e.getMD(t, "warm")
		md.Spec.ColdStart = serving.ColdStart{}
		if err := e.cl.Update(ctx, md); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "balloons gone", func() (bool, string) {
			var list corev1.PodList
			if err := e.cl.List(ctx, &list, client.InNamespace(e.ns), client.MatchingLabels{operator.LabelBalloon: "warm"}); err != nil {
				return false, err.Error()
			}
			return len(list.Items) == 0, fmt.Sprintf("%d pods", len(list.Items))
		})
		waitFor(t, 30*time.Second, "DaemonSet gone", func() (bool, string) {
			var ds appsv1.DaemonSet
			err := e.cl.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: operator.PrePullName("warm")}, &ds)
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	})
}

// TestWarmPoolDisabled: without a priority class the operator makes no
// balloons and says why in an event.
func TestWarmPoolDisabled(t *testing.T) {
	e := newEnv(t)
	md := e.echoMD("nowarm")
	md.Spec.ColdStart.WarmPool = 1
	e.create(t, md)
	e.startOperator(t)
	waitFor(t, 30*time.Second, "WarmPoolDisabled event", func() (bool, string) {
		evs := e.events(t, "nowarm")
		for _, ev := range evs {
			if len(ev) > 16 && ev[:16] == "WarmPoolDisabled" {
				return true, ""
			}
		}
		return false, fmt.Sprint(evs)
	})
	var list corev1.PodList
	if err := e.cl.List(context.Background(), &list, client.InNamespace(e.ns), client.HasLabels{operator.LabelBalloon}); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("%d balloon pods without a priority class", len(list.Items))
	}
}

func ptrTo[T any](v T) *T { return &v }
