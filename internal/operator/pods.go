package operator

import (
	"context"
	"fmt"
	"maps"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/replica/kube"
	"github.com/ebb-ml/ebb/internal/serving"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// Labels and annotations the operator puts on what it creates.
const (
	// LabelDeployment names the ModelDeployment a replica pod or Service
	// belongs to.
	LabelDeployment = "serving.ebb.dev/deployment"
	// Finalizer keeps a ModelDeployment until its replica pods are gone.
	Finalizer = "serving.ebb.dev/replicas"
	// ReplicaContainer is the name of the container that runs the replica.
	ReplicaContainer = "ebb"
	// ReplicaPort is the port replicas serve OIP v2 (REST and gRPC) on.
	ReplicaPort = 8080
)

// PodCustomizer applies ModelDeployments' pod overrides to replica pods
// before the pod backend creates them.
type PodCustomizer struct {
	reader    client.Reader
	scheme    *runtime.Scheme
	namespace string
}

// NewPodCustomizer returns a PodCustomizer reading ModelDeployments in
// namespace through reader (the manager's cache).
func NewPodCustomizer(reader client.Reader, scheme *runtime.Scheme, namespace string) *PodCustomizer {
	return &PodCustomizer{reader: reader, scheme: scheme, namespace: namespace}
}

// Customize finds the ModelDeployment of a replica pod (label
// LabelDeployment) and applies its overrides and an owner reference to pod.
// It fails when the ModelDeployment is gone, so no orphan pod is created.
//
// A pool's replica pod (label LabelPool) gets its ModelPool's template
// and is owned by it.
func (p *PodCustomizer) Customize(ctx context.Context, pod *corev1.Pod) error {
	if name := pod.Labels[LabelPool]; name != "" {
		return p.customizePool(ctx, pod, name)
	}
	name := pod.Labels[LabelDeployment]
	if name == "" {
		return fmt.Errorf("replica pod %q has no %s label", pod.Name, LabelDeployment)
	}
	var md v1alpha1.ModelDeployment
	if err := p.reader.Get(ctx, client.ObjectKey{Namespace: p.namespace, Name: name}, &md); err != nil {
		return fmt.Errorf("ModelDeployment of replica pod %q: %w", pod.Name, err)
	}
	if !md.DeletionTimestamp.IsZero() {
		return fmt.Errorf("ModelDeployment %q is being deleted: no new replica", name)
	}
	ApplyOverrides(pod, &md.Spec.Template)
	if err := controllerutil.SetControllerReference(&md, pod, p.scheme); err != nil {
		return fmt.Errorf("owner reference on replica pod %q: %w", pod.Name, err)
	}
	return nil
}

func (p *PodCustomizer) customizePool(ctx context.Context, pod *corev1.Pod, name string) error {
	var mp v1alpha1.ModelPool
	if err := p.reader.Get(ctx, client.ObjectKey{Namespace: p.namespace, Name: name}, &mp); err != nil {
		return fmt.Errorf("ModelPool of replica pod %q: %w", pod.Name, err)
	}
	if !mp.DeletionTimestamp.IsZero() {
		return fmt.Errorf("ModelPool %q is being deleted: no new replica", name)
	}
	ApplyOverrides(pod, &mp.Spec.Template)
	if err := controllerutil.SetControllerReference(&mp, pod, p.scheme); err != nil {
		return fmt.Errorf("owner reference on replica pod %q: %w", pod.Name, err)
	}
	return nil
}

// ApplyOverrides applies o to pod: image and pull policy and resources on
// the replica container (the one named ReplicaContainer, else the first),
// node selector, tolerations, affinity, priority class and service account
// on the pod; labels and annotations are added without replacing the
// backend's own. What it sets shares no memory with t.
func ApplyOverrides(pod *corev1.Pod, t *serving.Template) {
	o := kube.CoreTemplate(t)
	if len(pod.Spec.Containers) > 0 {
		c := &pod.Spec.Containers[0]
		for i := range pod.Spec.Containers {
			if pod.Spec.Containers[i].Name == ReplicaContainer {
				c = &pod.Spec.Containers[i]
			}
		}
		if o.Image != "" {
			c.Image = o.Image
		}
		if o.ImagePullPolicy != "" {
			c.ImagePullPolicy = o.ImagePullPolicy
		}
		if !t.Resources.IsZero() {
			c.Resources = o.Resources
		}
	}
	if len(o.NodeSelector) > 0 {
		if pod.Spec.NodeSelector == nil {
			pod.Spec.NodeSelector = map[string]string{}
		}
		maps.Copy(pod.Spec.NodeSelector, o.NodeSelector)
	}
	pod.Spec.Tolerations = append(pod.Spec.Tolerations, o.Tolerations...)
	if o.Affinity != nil {
		pod.Spec.Affinity = o.Affinity
	}
	if o.PriorityClassName != "" {
		pod.Spec.PriorityClassName = o.PriorityClassName
	}
	if o.ServiceAccountName != "" {
		pod.Spec.ServiceAccountName = o.ServiceAccountName
	}
	pod.Labels = addMissing(pod.Labels, o.Labels)
	pod.Annotations = addMissing(pod.Annotations, o.Annotations)
}

// addMissing adds the entries of extra that dst lacks.
func addMissing(dst, extra map[string]string) map[string]string {
	if len(extra) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]string{}
	}
	for k, v := range extra {
		if _, ok := dst[k]; !ok {
			dst[k] = v
		}
	}
	return dst
}
