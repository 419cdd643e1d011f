package operator

import (
	"context"
	"fmt"
	"maps"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/replica/kube"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// LabelPrePull names the ModelDeployment whose image a pre-pull DaemonSet
// and its pods pull.
const LabelPrePull = "serving.ebb.dev/prepull"

// Names of the containers of pre-pull pods.
const (
	// PrePullContainer is the init container that pulls the replica image
	// (it runs `ebb --help` and exits).
	PrePullContainer = "prepull"
	// PrePullPauseContainer is the main container: `ebb pause` in the same
	// image, so that the pod stays and the image is kept on the node.
	PrePullPauseContainer = "pause"
)

// PrePullName returns the name of a ModelDeployment's pre-pull DaemonSet.
func PrePullName(deployment string) string { return deployment + "-prepull" }

// PrePullDaemonSet returns the pre-pull DaemonSet of md: on every node the
// replica pods may run on (their node selector, tolerations and affinity),
// a pod whose init container pulls the replica image and whose main
// container idles in it with tiny requests. One DaemonSet per
// ModelDeployment: several ModelDeployments of one image each run their
// own, which costs one idle container per node each and nothing else (the
// node pulls the image once). Pre-pull pods run at the warm-pool priority
// class, when there is one, so replicas preempt them too. It has no owner
// reference yet; the reconciler sets it.
func PrePullDaemonSet(md *v1alpha1.ModelDeployment, o ColdStartOptions) *appsv1.DaemonSet {
	small := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("1m"),
			corev1.ResourceMemory: resource.MustParse("8Mi"),
		},
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
	image, policy := o.image(md), o.pullPolicy(md)
	sel := map[string]string{LabelPrePull: md.Name}
	t := kube.CoreTemplate(&md.Spec.Template)
	spec := corev1.PodSpec{
		InitContainers: []corev1.Container{{
			Name: PrePullContainer, Image: image, ImagePullPolicy: policy,
			Command: []string{"ebb"}, Args: []string{"--help"},
			Resources: *small.DeepCopy(),
		}},
		Containers: []corev1.Container{{
			Name: PrePullPauseContainer, Image: image, ImagePullPolicy: policy,
			Command: []string{"ebb"}, Args: PauseArgs,
			Resources: *small.DeepCopy(),
		}},
		NodeSelector:                  t.NodeSelector,
		Affinity:                      t.Affinity,
		Tolerations:                   t.Tolerations,
		PriorityClassName:             o.WarmPoolPriorityClass,
		AutomountServiceAccountToken:  ptr(false),
		TerminationGracePeriodSeconds: ptr(int64(1)),
	}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:      PrePullName(md.Name),
			Namespace: md.Namespace,
			Labels:    map[string]string{LabelPrePull: md.Name},
		},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(sel)},
				Spec:       spec,
			},
		},
	}
	setSpecHash(&ds.ObjectMeta, ds.Spec)
	return ds
}

// ensurePrePull keeps md's pre-pull DaemonSet while spec.coldStart.prePull
// is true (and md is not being deleted), replacing its spec when md's
// template changed, and deletes it otherwise.
func (r *reconciler) ensurePrePull(ctx context.Context, md *v1alpha1.ModelDeployment) error {
	want := md.Spec.ColdStart.PrePull && md.DeletionTimestamp.IsZero()
	var have appsv1.DaemonSet
	err := r.cache.Get(ctx, client.ObjectKey{Namespace: md.Namespace, Name: PrePullName(md.Name)}, &have)
	switch {
	case apierrors.IsNotFound(err):
		if !want {
			return nil
		}
		ds := PrePullDaemonSet(md, r.cold)
		if err := controllerutil.SetControllerReference(md, ds, r.scheme); err != nil {
			return err
		}
		if err := r.client.Create(ctx, ds); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create pre-pull DaemonSet %s: %w", ds.Name, err)
		}
		r.log.Info("created pre-pull DaemonSet", "deployment", md.Name, "daemonset", ds.Name)
		return nil
	case err != nil:
		return err
	}
	if !metav1.IsControlledBy(&have, md) {
		if want {
			return fmt.Errorf("DaemonSet %s/%s exists and is not owned by ModelDeployment %s: rename or delete it", have.Namespace, have.Name, md.Name)
		}
		return nil
	}
	if !want {
		if have.DeletionTimestamp != nil {
			return nil
		}
		uid := have.UID
		if err := r.client.Delete(ctx, &have, client.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete pre-pull DaemonSet %s: %w", have.Name, err)
		}
		r.log.Info("deleted pre-pull DaemonSet", "deployment", md.Name, "daemonset", have.Name)
		return nil
	}
	ds := PrePullDaemonSet(md, r.cold)
	if have.Annotations[AnnotationSpecHash] == ds.Annotations[AnnotationSpecHash] {
		return nil
	}
	patched := have.DeepCopy()
	if patched.Annotations == nil {
		patched.Annotations = map[string]string{}
	}
	patched.Annotations[AnnotationSpecHash] = ds.Annotations[AnnotationSpecHash]
	patched.Spec.Template = ds.Spec.Template
	if err := r.client.Update(ctx, patched); err != nil {
		return fmt.Errorf("update pre-pull DaemonSet %s: %w", have.Name, err)
	}
	return nil
}
