package operator

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/replica/kube"
	corev1 "k8s.io/api/core/v1"
)

// KubeHandle rebuilds the handle that the pod backend (replica/kube)
// returned for a pod it created: the spec from its AnnotationSpec, the
// endpoint from its IP, the pod's identity as the backend's state. A pod
// without an IP was never returned by Start; KubeHandle refuses it.
func KubeHandle(pod *corev1.Pod) (replica.Handle, error) {
	raw := pod.Annotations[kube.AnnotationSpec]
	if raw == "" {
		return replica.Handle{}, fmt.Errorf("pod %s has no %s annotation", pod.Name, kube.AnnotationSpec)
	}
	var spec replica.Spec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		return replica.Handle{}, fmt.Errorf("pod %s: annotation %s: %w", pod.Name, kube.AnnotationSpec, err)
	}
	if pod.Status.PodIP == "" {
		return replica.Handle{}, fmt.Errorf("pod %s has no IP yet: %w", pod.Name, errNotStarted)
	}
	state, err := json.Marshal(struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
		UID       string `json:"uid"`
	}{pod.Namespace, pod.Name, string(pod.UID)})
	if err != nil {
		return replica.Handle{}, err
	}
	h := replica.Handle{
		Spec:        spec,
		Backend:     kube.Name,
		Endpoint:    "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(kube.Port)),
		ScheduledAt: pod.CreationTimestamp.Time,
		State:       state,
	}
	if pod.Status.StartTime != nil {
		h.StartedAt = pod.Status.StartTime.Time
	}
	return h, nil
}
