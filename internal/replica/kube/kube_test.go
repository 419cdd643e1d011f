package kube_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/replica/kube"
	"github.com/ebb-ml/ebb/internal/replica/replicatest"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// setup returns a cluster with one node and a namespace for the test.
func setup(t *testing.T) (*kubetest.Cluster, string) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	c.CreateNodes(t, 1, kubetest.NodeSpec{})
	return c, ns
}

func diabetes(t *testing.T) string {
	model, err := filepath.Abs("../../../examples/diabetes/model.json")
	if err != nil {
		t.Fatal(err)
	}
	return model
}

func TestConformance(t *testing.T) {
	c, ns := setup(t)
	model := diabetes(t)
	bad := filepath.Join(t.TempDir(), "broken-model.json")
	if err := os.WriteFile(bad, []byte("this is not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	replicatest.Run(t, replicatest.Harness{
		New: func(t *testing.T) replica.Backend {
			b, err := kube.New(kube.Options{Client: c.Clientset(), Namespace: ns, Image: "ebb:test"})
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		Spec: func(t *testing.T, id string) replica.Spec {
			return replica.Spec{ID: id, Deployment: "diabetes", Model: model, Engine: "trees"}
		},
		BadSpec: func(t *testing.T, id string) replica.Spec {
			return replica.Spec{ID: id, Deployment: "broken", Model: bad, Engine: "trees"}
		},
		BadSpecMessage: "broken-model.json",
		Kill: func(t *testing.T, h replica.Handle) {
			var st struct{ Namespace, Name string }
			if err := json.Unmarshal(h.State, &st); err != nil || st.Name == "" {
				t.Fatalf("handle state %s names no pod", h.State)
			}
			zero := int64(0)
			if err := c.Clientset().CoreV1().Pods(st.Namespace).Delete(context.Background(), st.Name,
				metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
				t.Fatalf("force-delete pod %s: %v", st.Name, err)
			}
		},
	})
}

func TestPullDuration(t *testing.T) {
	tests := []struct {
		msg  string
		want time.Duration
		ok   bool
	}{
		{`Successfully pulled image "ebb:1" in 1.234s (1.5s including waiting). Image size: 1234 bytes.`, 1234 * time.Millisecond, true},
		{`Successfully pulled image "ebb:1" in 850ms (850ms including waiting)`, 850 * time.Millisecond, true},
		{`Successfully pulled image "nvcr.io/x:y" in 2m3.5s (2m4s including waiting)`, 2*time.Minute + 3500*time.Millisecond, true},
		{`Container image "ebb:1" already present on machine`, 0, true},
		{`Pulling image "ebb:1"`, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			d, ok := kube.PullDuration(tt.msg)
			if d != tt.want || ok != tt.ok {
				t.Errorf("PullDuration = %v, %v; want %v, %v", d, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestPhases(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	pod := &corev1.Pod{Status: corev1.PodStatus{
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(at(1 * time.Second))},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(at(20 * time.Second))},
		},
		ContainerStatuses: []corev1.ContainerStatus{{Name: kube.ContainerName, State: corev1.ContainerState{
			Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(at(14 * time.Second))},
		}}},
	}}
	pulled := func(when time.Duration, msg string) corev1.Event {
		return corev1.Event{
			Reason: "Pulled", Message: msg, LastTimestamp: metav1.NewTime(at(when)),
			InvolvedObject: corev1.ObjectReference{FieldPath: "spec.containers{ebb}"},
		}
	}
	events := []corev1.Event{
		{Reason: "Scheduled", LastTimestamp: metav1.NewTime(at(time.Second))},
		pulled(13*time.Second, `Successfully pulled image "ebb:1" in 11.5s (11.9s including waiting). Image size: 9 bytes.`),
	}
	// The replica's own times are finer than the apiserver's; a model
	// "loaded" before the container's second-resolution start moves up.
	got := kube.Phases(t0.Add(300*time.Millisecond), pod, events, nil, at(13500*time.Millisecond), at(16*time.Second))
	want := []serving.Phase{
		{Name: kube.PhaseScheduled, At: at(time.Second), Duration: serving.D(700 * time.Millisecond)},
		{Name: kube.PhaseImagePulled, At: at(13 * time.Second), Duration: serving.D(11500 * time.Millisecond)},
		{Name: kube.PhaseContainerStarted, At: at(14 * time.Second), Duration: serving.D(time.Second)},
		{Name: serving.PhaseModelLoaded, At: at(14 * time.Second), Duration: serving.D(0)},
		{Name: serving.PhaseReady, At: at(16 * time.Second), Duration: serving.D(2 * time.Second)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Phases (-want +got):\n%s", diff)
	}

	// A replica that fetched its artifact reports it between the
	// container's start and the model's load, with its size and whether
	// the node's cache held it.
	art := &serving.ArtifactFetch{FetchedAt: at(14200 * time.Millisecond), Took: serving.D(150 * time.Millisecond), Bytes: 1234, CacheHit: true}
	got = kube.Phases(t0.Add(300*time.Millisecond), pod, events, art, at(14500*time.Millisecond), at(16*time.Second))
	hit := true
	want = []serving.Phase{
		{Name: kube.PhaseScheduled, At: at(time.Second), Duration: serving.D(700 * time.Millisecond)},
		{Name: kube.PhaseImagePulled, At: at(13 * time.Second), Duration: serving.D(11500 * time.Millisecond)},
		{Name: kube.PhaseContainerStarted, At: at(14 * time.Second), Duration: serving.D(time.Second)},
		{Name: serving.PhaseArtifactFetched, At: at(14200 * time.Millisecond), Duration: serving.D(150 * time.Millisecond), Bytes: 1234, CacheHit: &hit},
		{Name: serving.PhaseModelLoaded, At: at(14500 * time.Millisecond), Duration: serving.D(300 * time.Millisecond)},
		{Name: serving.PhaseReady, At: at(16 * time.Second), Duration: serving.D(1500 * time.Millisecond)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Phases with an artifact (-want +got):\n%s", diff)
	}
}

func TestReadyReportsColdStartPhases(t *testing.T) {
	c, ns := setup(t)
	b, err := kube.New(kube.Options{Client: c.Clientset(), Namespace: ns, Image: "ebb:test",
		Template: func(spec replica.Spec, pod *corev1.Pod) {
			pod.Annotations[kubetest.PullDurationAnnotation] = "1500ms"
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := b.Start(ctx, replica.Spec{ID: "phases", Deployment: "diabetes", Model: diabetes(t), Engine: "trees"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop(ctx, h)
	st, err := b.Ready(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range st.Phases {
		names = append(names, p.Name)
		if p.Name == kube.PhaseImagePulled && p.Duration.Duration != 1500*time.Millisecond {
			t.Errorf("image pull took %v; want the 1.5s the kubelet reported", p.Duration.Duration)
		}
	}
	want := []string{kube.PhaseScheduled, kube.PhaseImagePulled, kube.PhaseContainerStarted, serving.PhaseModelLoaded, serving.PhaseReady}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("phases (-want +got):\n%s\n%+v", diff, st.Phases)
	}
	if last := st.Phases[len(st.Phases)-1]; !last.At.Equal(st.ReadyAt) {
		t.Errorf("ready phase ends at %v; want ReadyAt %v", last.At, st.ReadyAt)
	}
}

func TestTemplateAndUnschedulable(t *testing.T) {
	c, ns := setup(t)
	b, err := kube.New(kube.Options{Client: c.Clientset(), Namespace: ns, Image: "ebb:test",
		Template: func(spec replica.Spec, pod *corev1.Pod) {
			pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{kubetest.GPUResource: *resourceQty(8)}
			pod.Labels["team"] = "ml"
		}})
	if err != nil {
		t.Fatal(err)
	}
	pod := b.Pod(replica.Spec{ID: "gpu", Deployment: "d", Model: "/m.json", Engine: "trees"})
	if pod.Labels[kube.LabelDeployment] != "d" || pod.Labels[kube.LabelReplica] != "gpu" || pod.Labels["team"] != "ml" {
		t.Errorf("pod labels = %v", pod.Labels)
	}
	if _, ok := pod.Labels[kube.LabelModelVersion]; ok {
		t.Errorf("pod of a model given by path has label %s", kube.LabelModelVersion)
	}
	// A replica of a registry version carries it: in a label, which
	// gateways route /versions/{v} by, and in its arguments.
	pod = b.Pod(replica.Spec{ID: "v3", Deployment: "d", Model: "s3://models/d/3", Engine: "trees", Version: "diabetes:3"})
	if got := pod.Labels[kube.LabelModelVersion]; got != "3" {
		t.Errorf("label %s = %q; want 3", kube.LabelModelVersion, got)
	}
	if args := strings.Join(pod.Spec.Containers[0].Args, " "); !strings.Contains(args, "--model-version diabetes:3") {
		t.Errorf("replica args %q lack --model-version diabetes:3", args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = b.Start(ctx, replica.Spec{ID: "gpu", Deployment: "d", Model: "/m.json", Engine: "trees"})
	if err == nil || !strings.Contains(err.Error(), "nvidia.com/gpu") {
		t.Fatalf("Start of a pod no node fits = %v; want the scheduler's reason", err)
	}
	if _, err := c.Clientset().CoreV1().Pods(ns).Get(context.Background(), "gpu", metav1.GetOptions{}); err == nil {
		t.Errorf("the pod of a failed Start was not deleted")
	}
}

func resourceQty(n int64) *resource.Quantity { return resource.NewQuantity(n, resource.DecimalSI) }
