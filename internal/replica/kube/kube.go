// Package kube runs replicas as Kubernetes pods: one pod per replica, whose
// container "ebb" runs `ebb-replica ... --addr 0.0.0.0:8080` (the lean replica
// binary, cmd/ebb-replica, on the image's PATH) and serves OIP v2 on the pod
// IP.
//
// The backend keeps no state of its own: a Handle names the pod (namespace,
// name, UID), and every method reads the pod from the apiserver, so any
// Backend over the same cluster can Ready, Wait, Stop or Recover any handle.
// Ready reports the cold-start phases a cluster adds (scheduled, image
// pulled with the pull's duration, container started) from the pod's
// conditions, its kubelet events and its container status.
package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
)

// Name is the backend name recorded in handles.
const Name = "kube"

// Labels, annotation and container of replica pods.
const (
	LabelDeployment = "serving.ebb.dev/deployment"
	LabelReplica    = "serving.ebb.dev/replica"
	// LabelModelVersion is the registry version the replica serves, in
	// its OIP v2 form ("3" for diabetes:3); absent for a model given by
	// path. Gateways route /v2/models/{m}/versions/{v} by it.
	LabelModelVersion = "serving.ebb.dev/model-version"
	// LabelTrack is the tag of the traffic target the replica serves
	// (replica.Spec.Track); absent for the primary's replicas.
	LabelTrack = "serving.ebb.dev/track"
	// LabelPool names the multi-model pool (serving.Pool) a replica pod
	// belongs to, instead of LabelDeployment: a pool's name may equal a
	// deployment's, whose Service must not select the pool's pods.
	// LabelPoolSlot is the replica's slot in the pool (its name in
	// placement).
	LabelPool     = "serving.ebb.dev/pool"
	LabelPoolSlot = "serving.ebb.dev/pool-slot"
	// AnnotationSpec holds the replica.Spec as JSON.
	AnnotationSpec = "serving.ebb.dev/replica-spec"
	ContainerName  = "ebb"
	// Port is the container port the replica serves on, named PortName.
	Port     = 8080
	PortName = "http"
)

// Binary is the command replica pods run, found on the image's PATH: the
// lean replica binary, cmd/ebb-replica, which the ebb image installs next to
// ebb. An image built FROM the ebb image has it too.
const Binary = "ebb-replica"

// ArtifactCachePath is where Options.ArtifactCache is mounted in replica
// pods; $EBB_ARTIFACT_CACHE names it.
const ArtifactCachePath = "/var/cache/ebb/artifacts"

// artifactCacheVolume is the name of that volume in the pod.
const artifactCacheVolume = "artifact-cache"

// DefaultImage runs replicas when Options.Image is empty.
const DefaultImage = "ghcr.io/ebb-ml/ebb:latest"

var _ replica.Backend = (*Backend)(nil)

// Options configure a Backend.
type Options struct {
	// Client talks to the apiserver (required). Reads go straight to the
	// apiserver, never through a cache, so a fresh pod is seen at once.
	Client kubernetes.Interface
	// Namespace the pods run in; default "default".
	Namespace string
	// Image runs the replica container; default DefaultImage.
	Image           string
	ImagePullPolicy corev1.PullPolicy
	// Template, when set, edits each pod before it is created: the
	// operator applies a ModelDeployment's pod overrides (image,
	// resources, node selector, tolerations, affinity, priority class,
	// labels, annotations) and owner references here. It must keep the
	// container named ContainerName and its port.
	Template func(spec replica.Spec, pod *corev1.Pod)
	// ArtifactCache, when set, is the volume replicas fetch registry
	// artifacts into, mounted at ArtifactCachePath: a hostPath shares one
	// cache among the replicas of a node (the second replica on a node
	// downloads nothing), an emptyDir gives each pod its own.
	ArtifactCache *corev1.VolumeSource
	// Env and EnvFrom are added to every replica container: the artifact
	// store's settings, e.g. $EBB_S3_ENDPOINT and credentials from a
	// Secret.
	Env     []corev1.EnvVar
	EnvFrom []corev1.EnvFromSource
	// Volumes are added to every replica pod and mounted in its
	// container: e.g. a shared artifact store volume, read-only.
	Volumes      []corev1.Volume
	VolumeMounts []corev1.VolumeMount
	// ReplicaArgs are more replica flags (of Binary) given to every replica,
	// such as the operator's --max-request-elements.
	ReplicaArgs []string
	// Clock stamps handles; default the real clock.
	Clock clock.PassiveClock
	// HTTPClient asks replicas about themselves; default a client with a
	// 2s timeout.
	HTTPClient *http.Client
}

// Backend starts replicas as pods. Its zero value is not usable; call New.
type Backend struct {
	opts Options
}

// state is the backend-specific part of a Handle.
type state struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       types.UID `json:"uid"`
}

// New returns a Backend.
func New(opts Options) (*Backend, error) {
	if opts.Client == nil {
		return nil, errors.New("kube backend: Options.Client is required")
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.Image == "" {
		opts.Image = DefaultImage
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 2 * time.Second}
	}
	return &Backend{opts: opts}, nil
}

// Pod returns the pod Start creates for spec, Template applied.
func (b *Backend) Pod(spec replica.Spec) *corev1.Pod {
	specJSON, _ := json.Marshal(spec)
	env := make([]corev1.EnvVar, 0, len(spec.Env))
	for k, v := range spec.Env {
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	sort.Slice(env, func(i, j int) bool { return env[i].Name < env[j].Name })
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        spec.ID,
			Namespace:   b.opts.Namespace,
			Labels:      map[string]string{LabelDeployment: spec.Deployment, LabelReplica: spec.ID},
			Annotations: map[string]string{AnnotationSpec: string(specJSON)},
		},
		Spec: corev1.PodSpec{
			// A replica that ends is replaced by the control loop, never
			// restarted in place.
			RestartPolicy:      corev1.RestartPolicyNever,
			EnableServiceLinks: ptr(false),
			Containers: []corev1.Container{{
				Name:            ContainerName,
				Image:           b.opts.Image,
				ImagePullPolicy: b.opts.ImagePullPolicy,
				Command:         []string{Binary},
				Args:            Args(spec, b.opts.ReplicaArgs...),
				Env:             env,
				Ports:           []corev1.ContainerPort{{Name: PortName, ContainerPort: Port, Protocol: corev1.ProtocolTCP}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
						Path: "/v2/health/ready", Port: intstr.FromString(PortName),
					}},
					PeriodSeconds: 1, FailureThreshold: 3, TimeoutSeconds: 1,
				},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
		},
	}
	ctr := &pod.Spec.Containers[0]
	ctr.Env = append(ctr.Env, b.opts.Env...)
	ctr.EnvFrom = append(ctr.EnvFrom, b.opts.EnvFrom...)
	for _, v := range b.opts.Volumes {
		pod.Spec.Volumes = append(pod.Spec.Volumes, *v.DeepCopy())
	}
	ctr.VolumeMounts = append(ctr.VolumeMounts, b.opts.VolumeMounts...)
	if v := b.opts.ArtifactCache; v != nil {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: artifactCacheVolume, VolumeSource: *v.DeepCopy()})
		ctr.VolumeMounts = append(ctr.VolumeMounts, corev1.VolumeMount{Name: artifactCacheVolume, MountPath: ArtifactCachePath})
		ctr.Env = append(ctr.Env, corev1.EnvVar{Name: "EBB_ARTIFACT_CACHE", Value: ArtifactCachePath})
	}
	if v := serving.OIPVersion(spec.Version); v != "" {
		pod.Labels[LabelModelVersion] = v
	}
	if spec.Track != "" {
		pod.Labels[LabelTrack] = spec.Track
	}
	if p := spec.Pool; p != nil {
		delete(pod.Labels, LabelDeployment)
		pod.Labels[LabelPool], pod.Labels[LabelPoolSlot] = spec.Deployment, p.Slot
	}
	if b.opts.Template != nil {
		b.opts.Template(spec, pod)
	}
	return pod
}

// Args are the replica flags (the arguments of Binary) that serve spec on
// 0.0.0.0:Port, with extra flags.
func Args(spec replica.Spec, extra ...string) []string {
	return replica.Args(spec, append([]string{"--addr", "0.0.0.0:" + strconv.Itoa(Port)}, extra...)...)
}

// Start creates the replica's pod and returns once it is scheduled and has
// an IP. If that does not happen before ctx ends, the pod is deleted and
// the error says why (e.g. the scheduler's "0/3 nodes are available: ...").
func (b *Backend) Start(ctx context.Context, spec replica.Spec) (replica.Handle, error) {
	h := replica.Handle{Spec: spec, Backend: Name, ScheduledAt: b.opts.Clock.Now()}
	if errs := validation.IsDNS1123Subdomain(spec.ID); len(errs) > 0 {
		return h, fmt.Errorf("start replica %q: the ID must be a valid pod name: %s", spec.ID, strings.Join(errs, "; "))
	}
	pod := b.Pod(spec)
	created, err := b.opts.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return h, fmt.Errorf("start replica %s: create pod %s/%s: %w", spec.ID, pod.Namespace, pod.Name, err)
	}
	st := state{Namespace: created.Namespace, Name: created.Name, UID: created.UID}
	h.State, _ = json.Marshal(st)
	var last *corev1.Pod
	err = b.watch(ctx, st, func(p *corev1.Pod) (bool, error) {
		if p == nil {
			return false, fmt.Errorf("pod %s/%s was deleted before it ran", st.Namespace, st.Name)
		}
		last = p
		if msg := failure(p); msg != "" {
			return false, errors.New(msg)
		}
		return p.Spec.NodeName != "" && p.Status.PodIP != "", nil
	})
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %s", ctx.Err(), pending(last))
		}
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.delete(dctx, st, ptr(int64(0)))
		return h, fmt.Errorf("start replica %s: %w", spec.ID, err)
	}
	h.StartedAt = b.opts.Clock.Now()
	h.Endpoint = "http://" + net.JoinHostPort(last.Status.PodIP, strconv.Itoa(Port))
	return h, nil
}

// pending says why a pod is not running yet.
func pending(p *corev1.Pod) string {
	if p == nil {
		return "pod not seen"
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue {
			return fmt.Sprintf("pod %s/%s not scheduled (%s): %s", p.Namespace, p.Name, c.Reason, c.Message)
		}
	}
	if p.Spec.NodeName == "" {
		return fmt.Sprintf("pod %s/%s not scheduled yet", p.Namespace, p.Name)
	}
	return fmt.Sprintf("pod %s/%s on node %s has no IP yet", p.Namespace, p.Name, p.Spec.NodeName)
}

// failure returns why the pod's replica ended, or "" while it has not.
func failure(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name != ContainerName {
			continue
		}
		if t := cs.State.Terminated; t != nil {
			msg := fmt.Sprintf("container %s of pod %s/%s exited with code %d (%s)", ContainerName, p.Namespace, p.Name, t.ExitCode, t.Reason)
			if m := strings.TrimSpace(t.Message); m != "" {
				msg += ": " + m
			}
			return msg
		}
		if w := cs.State.Waiting; w != nil && fatalWaiting[w.Reason] {
			return fmt.Sprintf("container %s of pod %s/%s cannot start (%s): %s", ContainerName, p.Namespace, p.Name, w.Reason, w.Message)
		}
	}
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return fmt.Sprintf("pod %s/%s %s: %s %s", p.Namespace, p.Name, strings.ToLower(string(p.Status.Phase)), p.Status.Reason, p.Status.Message)
	}
	return ""
}

// fatalWaiting are the waiting reasons a replica does not recover from by
// waiting longer.
var fatalWaiting = map[string]bool{
	"ImagePullBackOff":           true,
	"InvalidImageName":           true,
	"CreateContainerConfigError": true,
	"CreateContainerError":       true,
	"CrashLoopBackOff":           true,
}

func decodeState(h replica.Handle) (state, error) {
	var st state
	if err := json.Unmarshal(h.State, &st); err != nil || st.Name == "" || st.UID == "" {
		return st, fmt.Errorf("replica %s: handle has no pod state: %w", h.Spec.ID, replica.ErrNotFound)
	}
	return st, nil
}

// Recover checks that the handle's pod still exists (same UID), is not
// being deleted and has not ended; otherwise it returns replica.ErrNotFound.
// The backend keeps no state, so nothing else is needed.
func (b *Backend) Recover(ctx context.Context, h replica.Handle) error {
	st, err := decodeState(h)
	if err != nil {
		return err
	}
	p, err := b.opts.Client.CoreV1().Pods(st.Namespace).Get(ctx, st.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("replica %s: pod %s/%s is gone: %w", h.Spec.ID, st.Namespace, st.Name, replica.ErrNotFound)
	case err != nil:
		return fmt.Errorf("replica %s: get pod %s/%s: %w", h.Spec.ID, st.Namespace, st.Name, err)
	case p.UID != st.UID:
		return fmt.Errorf("replica %s: pod %s/%s was replaced (uid %s, want %s): %w", h.Spec.ID, st.Namespace, st.Name, p.UID, st.UID, replica.ErrNotFound)
	case p.DeletionTimestamp != nil:
		return fmt.Errorf("replica %s: pod %s/%s is terminating: %w", h.Spec.ID, st.Namespace, st.Name, replica.ErrNotFound)
	}
	if msg := failure(p); msg != "" {
		return fmt.Errorf("replica %s: %s: %w", h.Spec.ID, msg, replica.ErrNotFound)
	}
	return nil
}

// Wait blocks until the pod is deleted, fails, or its container ends.
func (b *Backend) Wait(ctx context.Context, h replica.Handle) (replica.Exit, error) {
	st, err := decodeState(h)
	if err != nil {
		return replica.Exit{}, err
	}
	var ex replica.Exit
	err = b.watch(ctx, st, func(p *corev1.Pod) (bool, error) {
		if p == nil {
			if ex.Err == nil && ex.Code == 0 {
				ex = replica.Exit{Code: -1, Err: fmt.Errorf("pod %s/%s deleted", st.Namespace, st.Name)}
			}
			return true, nil
		}
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; cs.Name == ContainerName && t != nil {
				ex = replica.Exit{Code: int(t.ExitCode)}
				if t.ExitCode != 0 {
					ex.Err = errors.New(failure(p))
				}
				return true, nil
			}
		}
		if msg := failure(p); msg != "" {
			ex = replica.Exit{Code: -1, Err: errors.New(msg)}
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return replica.Exit{}, err
	}
	return ex, nil
}

// Stop deletes the pod with a grace period that ends a second before ctx's
// deadline (the pod's own terminationGracePeriodSeconds without one), and
// waits until it is gone; when ctx ends first it force-deletes the pod.
// Stopping a replica whose pod is gone is not an error.
func (b *Backend) Stop(ctx context.Context, h replica.Handle) error {
	st, err := decodeState(h)
	if err != nil {
		return nil // nothing this backend could have started
	}
	var grace *int64
	if dl, ok := ctx.Deadline(); ok {
		g := int64(time.Until(dl)/time.Second) - 1
		grace = ptr(max(g, 0))
	}
	if err := b.delete(ctx, st, grace); err != nil {
		if ctx.Err() == nil {
			return fmt.Errorf("stop replica %s: %w", h.Spec.ID, err)
		}
	} else {
		err = b.watch(ctx, st, func(p *corev1.Pod) (bool, error) { return p == nil, nil })
		if err == nil {
			return nil
		}
		if ctx.Err() == nil {
			return fmt.Errorf("stop replica %s: %w", h.Spec.ID, err)
		}
	}
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.delete(fctx, st, ptr(int64(0))); err != nil {
		return fmt.Errorf("stop replica %s: force-delete pod %s/%s: %w", h.Spec.ID, st.Namespace, st.Name, err)
	}
	return nil
}

// delete deletes the pod if it is still the handle's; gone is not an error.
func (b *Backend) delete(ctx context.Context, st state, grace *int64) error {
	err := b.opts.Client.CoreV1().Pods(st.Namespace).Delete(ctx, st.Name, metav1.DeleteOptions{
		GracePeriodSeconds: grace,
		Preconditions:      &metav1.Preconditions{UID: &st.UID},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or replaced by a pod this handle does not name
	}
	return err
}

func ptr[T any](v T) *T { return &v }
