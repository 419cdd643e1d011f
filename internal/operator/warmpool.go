package operator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/replica/kube"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// Labels and annotations of warm-pool placeholder ("balloon") pods.
const (
	// LabelBalloon names the ModelDeployment a balloon pod holds room for.
	// Balloon pods never carry LabelDeployment: they are no replicas, and
	// neither the control loop nor the Service may see them.
	LabelBalloon = "serving.ebb.dev/balloon"
	// AnnotationSpecHash is the hash of the spec the operator built a
	// balloon pod or pre-pull DaemonSet from; a different hash means the
	// ModelDeployment's template changed and the object is replaced.
	AnnotationSpecHash = "serving.ebb.dev/spec-hash"
	// BalloonContainer is the name of a balloon pod's only container.
	BalloonContainer = "balloon"
)

// PauseArgs are the arguments of `ebb` that block until SIGTERM: the
// command of balloon pods and of pre-pull pods' main container.
var PauseArgs = []string{"pause"}

// ColdStartOptions configure warm pools and pre-pull DaemonSets.
type ColdStartOptions struct {
	// Image is the replica image of ModelDeployments that name none
	// (spec.template.image); default kube.DefaultImage. Give the pod
	// backend's image.
	Image string
	// ImagePullPolicy is the replica pull policy of ModelDeployments that
	// name none; default Kubernetes'.
	ImagePullPolicy corev1.PullPolicy
	// WarmPoolPriorityClass is the PriorityClass of balloon pods: it must
	// have a negative value (every replica preempts a balloon) and
	// preemptionPolicy Never. Empty disables warm pools: the operator then
	// creates no balloon pods and records a WarmPoolDisabled event on each
	// ModelDeployment that asks for some. The Helm chart creates the class
	// and passes its name.
	WarmPoolPriorityClass string
}

func (o ColdStartOptions) image(md *v1alpha1.ModelDeployment) string {
	if md.Spec.Template.Image != "" {
		return md.Spec.Template.Image
	}
	if o.Image != "" {
		return o.Image
	}
	return kube.DefaultImage
}

func (o ColdStartOptions) pullPolicy(md *v1alpha1.ModelDeployment) corev1.PullPolicy {
	if md.Spec.Template.ImagePullPolicy != "" {
		return corev1.PullPolicy(md.Spec.Template.ImagePullPolicy)
	}
	return o.ImagePullPolicy
}

// BalloonName is the name of the i-th balloon pod of a ModelDeployment.
// Names are fixed, so a re-run reconcile or a stale cache cannot create a
// second pod for the same slot: the API server answers AlreadyExists.
func BalloonName(deployment string, i int) string {
	return deployment + "-balloon-" + strconv.Itoa(i)
}

// balloonIndex returns i of a pod named BalloonName(deployment, i), or -1.
func balloonIndex(deployment, pod string) int {
	s, ok := strings.CutPrefix(pod, deployment+"-balloon-")
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || strconv.Itoa(i) != s {
		return -1
	}
	return i
}

// BalloonPod returns the i-th balloon pod of md: a pod with the replica
// container's resources and the replica pods' node selector, tolerations
// and affinity (the same overrides as ApplyOverrides), at priority class
// priorityClass, whose container runs `ebb pause` in the replica image. It
// has no owner reference yet; the reconciler sets it.
func BalloonPod(md *v1alpha1.ModelDeployment, i int, o ColdStartOptions) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      BalloonName(md.Name, i),
			Namespace: md.Namespace,
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:            BalloonContainer,
				Image:           o.image(md),
				ImagePullPolicy: o.pullPolicy(md),
				Command:         []string{"ebb"},
				Args:            PauseArgs,
			}},
			RestartPolicy:                 corev1.RestartPolicyAlways,
			AutomountServiceAccountToken:  ptr(false),
			TerminationGracePeriodSeconds: ptr(int64(1)),
		},
	}
	ApplyOverrides(pod, &md.Spec.Template)
	// Balloons must be preemptible by every replica, whatever class the
	// replicas run at, and need no API access.
	pod.Spec.PriorityClassName = o.WarmPoolPriorityClass
	pod.Spec.ServiceAccountName = ""
	delete(pod.Labels, LabelDeployment)
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[LabelBalloon] = md.Name
	setSpecHash(&pod.ObjectMeta, pod.Spec)
	return pod
}

// setSpecHash annotates meta with the hash of spec.
func setSpecHash(meta *metav1.ObjectMeta, spec any) {
	b, _ := json.Marshal(spec)
	sum := sha256.Sum256(b)
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[AnnotationSpecHash] = hex.EncodeToString(sum[:8])
}

// balloonCacheOptions are the options of the cache of balloon pods: the
// namespace's pods labelled LabelBalloon (the manager's cache holds only
// replica pods).
func balloonCacheOptions(o cache.Options, namespace string) cache.Options {
	has, _ := labels.NewRequirement(LabelBalloon, selection.Exists, nil)
	o.DefaultNamespaces = map[string]cache.Config{namespace: {}}
	o.ByObject = map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Label: labels.NewSelector().Add(*has)},
	}
	return o
}

// ensureBalloons keeps md's balloon pods: BalloonName(md, 0..N-1) with the
// current spec, N = spec.coldStart.warmPool (0 when md is being deleted or
// no priority class is configured). It creates the missing ones, deletes
// extra, ended or outdated ones, and reports whether it must run again
// (a pod it replaces is still terminating).
func (r *reconciler) ensureBalloons(ctx context.Context, md *v1alpha1.ModelDeployment) (requeue bool, err error) {
	want := int(md.Spec.ColdStart.WarmPool)
	if !md.DeletionTimestamp.IsZero() {
		want = 0
	}
	if want > 0 && r.cold.WarmPoolPriorityClass == "" {
		r.events.Eventf(md, corev1.EventTypeWarning, "WarmPoolDisabled",
			"spec.coldStart.warmPool is %d but the operator has no warm-pool priority class: start it with --warm-pool-priority-class (the Helm chart does)", want)
		want = 0
	}
	var list corev1.PodList
	if err := r.balloons.List(ctx, &list, client.InNamespace(md.Namespace), client.MatchingLabels{LabelBalloon: md.Name}); err != nil {
		return false, fmt.Errorf("list balloon pods of %s: %w", md.Name, err)
	}
	have := make(map[int]bool, want)
	for i := range list.Items {
		p := &list.Items[i]
		if !metav1.IsControlledBy(p, md) {
			continue
		}
		idx := balloonIndex(md.Name, p.Name)
		if p.DeletionTimestamp != nil {
			if idx >= 0 && idx < want {
				have[idx] = true // recreated once gone
				requeue = true
			}
			continue
		}
		var hash string
		if idx >= 0 && idx < want {
			hash = BalloonPod(md, idx, r.cold).Annotations[AnnotationSpecHash]
		}
		ended := p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
		if idx >= 0 && idx < want && !ended && p.Annotations[AnnotationSpecHash] == hash {
			have[idx] = true
			continue
		}
		uid := p.UID
		if err := r.client.Delete(ctx, p, client.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return requeue, fmt.Errorf("delete balloon pod %s: %w", p.Name, err)
		}
		r.log.Info("deleted balloon pod", "deployment", md.Name, "pod", p.Name, "phase", p.Status.Phase)
		if idx >= 0 && idx < want {
			have[idx] = true // outdated or ended: recreated once gone
			requeue = true
		}
	}
	for i := 0; i < want; i++ {
		if have[i] {
			continue
		}
		pod := BalloonPod(md, i, r.cold)
		if err := controllerutil.SetControllerReference(md, pod, r.scheme); err != nil {
			return requeue, err
		}
		err := r.client.Create(ctx, pod)
		switch {
		case apierrors.IsAlreadyExists(err):
			requeue = true // terminating, or not in the cache yet
		case err != nil:
			return requeue, fmt.Errorf("create balloon pod %s: %w", pod.Name, err)
		default:
			r.log.Info("created balloon pod", "deployment", md.Name, "pod", pod.Name)
		}
	}
	return requeue, nil
}
