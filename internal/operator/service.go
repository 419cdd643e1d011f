package operator

import (
	"context"
	"fmt"
	"maps"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// ServiceName returns the name of a ModelDeployment's headless Service: the
// ModelDeployment's own name.
func ServiceName(deployment string) string { return deployment }

// desiredService is the headless Service that selects a ModelDeployment's
// replica pods, so that kube-controller-manager keeps EndpointSlices of
// their ready addresses; the EndpointSlices inherit its labels, among them
// LabelDeployment, which is how gateways find them.
func desiredService(md *v1alpha1.ModelDeployment) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:      ServiceName(md.Name),
			Namespace: md.Namespace,
			Labels:    map[string]string{LabelDeployment: md.Name},
		},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{LabelDeployment: md.Name},
			Ports: []corev1.ServicePort{{
				Name:       "http",
				Port:       ReplicaPort,
				TargetPort: intstr.FromInt32(ReplicaPort),
				Protocol:   corev1.ProtocolTCP,
			}},
		},
	}
}

// ensureService creates the Service of md, or repairs its labels, selector
// and ports when someone changed them.
func (r *reconciler) ensureService(ctx context.Context, md *v1alpha1.ModelDeployment) error {
	want := desiredService(md)
	var have corev1.Service
	err := r.cache.Get(ctx, client.ObjectKeyFromObject(want), &have)
	if apierrors.IsNotFound(err) {
		if err := controllerutil.SetControllerReference(md, want, r.scheme); err != nil {
			return err
		}
		if err := r.client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create Service %s: %w", want.Name, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if !metav1.IsControlledBy(&have, md) {
		return fmt.Errorf("Service %s/%s exists and is not owned by ModelDeployment %s: rename or delete it", have.Namespace, have.Name, md.Name)
	}
	if apiequality.Semantic.DeepEqual(have.Spec.Selector, want.Spec.Selector) &&
		apiequality.Semantic.DeepEqual(have.Spec.Ports, want.Spec.Ports) &&
		have.Labels[LabelDeployment] == md.Name {
		return nil
	}
	patched := have.DeepCopy()
	if patched.Labels == nil {
		patched.Labels = map[string]string{}
	}
	maps.Copy(patched.Labels, want.Labels)
	patched.Spec.Selector = want.Spec.Selector
	patched.Spec.Ports = want.Spec.Ports
	if err := r.client.Patch(ctx, patched, client.MergeFrom(&have)); err != nil {
		return fmt.Errorf("repair Service %s: %w", have.Name, err)
	}
	return nil
}
