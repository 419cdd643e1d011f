package operator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PodHandle rebuilds the handle of the replica a pod runs, from what the pod
// backend recorded on the pod when it created it.
type PodHandle func(pod *corev1.Pod) (replica.Handle, error)

// Store is the control loop's store (control.Store) over the Kubernetes API:
// deployments are the ModelDeployments of one namespace, and replica records
// are the replica pods themselves, so there is nothing to write.
//
// A ModelDeployment that is being deleted, or whose spec does not validate,
// reads as absent: the control loop then stops its replicas. Why a spec is
// invalid is kept for the status (Invalid).
type Store struct {
	cache     client.Reader // ModelDeployments, from the informer cache
	api       client.Reader // pods and the first load, from the API server
	writer    client.Writer // deletes pods that never started
	namespace string
	handle    PodHandle
	log       *slog.Logger

	// mu guards seen.
	mu   sync.Mutex
	seen map[string]seenSpec
}

// seenSpec is what the control loop was last given for a deployment.
type seenSpec struct {
	generation int64
	invalid    string // why the spec was refused; empty when valid
}

// NewStore returns a Store reading ModelDeployments in namespace through
// cache (and api for the initial list), and replica pods through api, which
// must not be a cache: the loop must see every pod that exists when it
// starts. writer deletes the pods ListReplicas does not adopt.
func NewStore(cache, api client.Reader, writer client.Writer, namespace string, handle PodHandle, log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	return &Store{cache: cache, api: api, writer: writer, namespace: namespace, handle: handle, log: log, seen: map[string]seenSpec{}}
}

// ListDeployments returns every live, valid ModelDeployment, read from the
// API server.
func (s *Store) ListDeployments(ctx context.Context) ([]serving.Deployment, error) {
	var list v1alpha1.ModelDeploymentList
	if err := s.api.List(ctx, &list, client.InNamespace(s.namespace)); err != nil {
		return nil, fmt.Errorf("list ModelDeployments in %q: %w", s.namespace, err)
	}
	var out []serving.Deployment
	for i := range list.Items {
		if d, ok := s.convert(&list.Items[i]); ok {
			out = append(out, d)
		}
	}
	return out, nil
}

// GetDeployment returns the named ModelDeployment from the cache, or an
// error wrapping store.ErrNotFound when it does not exist, is being deleted
// or is invalid.
func (s *Store) GetDeployment(ctx context.Context, name string) (serving.Deployment, error) {
	var md v1alpha1.ModelDeployment
	err := s.cache.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, &md)
	if apierrors.IsNotFound(err) {
		s.forget(name)
		return serving.Deployment{}, fmt.Errorf("ModelDeployment %s/%s: %w", s.namespace, name, store.ErrNotFound)
	}
	if err != nil {
		return serving.Deployment{}, err
	}
	d, ok := s.convert(&md)
	if !ok {
		return serving.Deployment{}, fmt.Errorf("ModelDeployment %s/%s is being deleted or invalid: %w", s.namespace, name, store.ErrNotFound)
	}
	return d, nil
}

// convert returns md as the control loop sees it, and false when the loop
// must treat it as absent.
func (s *Store) convert(md *v1alpha1.ModelDeployment) (serving.Deployment, bool) {
	if !md.DeletionTimestamp.IsZero() {
		s.forget(md.Name)
		return serving.Deployment{}, false
	}
	d := Deployment(md)
	seen := seenSpec{generation: md.Generation}
	if err := d.Validate(); err != nil {
		seen.invalid = err.Error()
	}
	s.mu.Lock()
	s.seen[md.Name] = seen
	s.mu.Unlock()
	return d, seen.invalid == ""
}

// Deployment returns md as a defaulted serving.Deployment.
func Deployment(md *v1alpha1.ModelDeployment) serving.Deployment {
	d := md.Deployment()
	d.Spec.Default()
	return d
}

func (s *Store) forget(name string) {
	s.mu.Lock()
	delete(s.seen, name)
	s.mu.Unlock()
}

// Observed returns the generation of the deployment the control loop last
// read, and why it was refused ("" when valid); ok is false when the loop
// has not read it.
func (s *Store) Observed(name string) (generation int64, invalid string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen, ok := s.seen[name]
	return seen.generation, seen.invalid, ok
}

// ListReplicas returns the handles of every replica pod in the namespace
// that is not being deleted, read from the API server; the control loop
// calls it once, when it starts. A pod whose start an earlier leader had not
// seen through (no IP yet: errNotStarted from the PodHandle) serves nothing
// and would never be stopped by the loop, so it is deleted instead of
// adopted: the loop starts a fresh one if it still wants it. Other pods
// whose handle cannot be rebuilt are skipped with a warning.
func (s *Store) ListReplicas(ctx context.Context) ([]replica.Handle, error) {
	pods, err := listReplicaPods(ctx, s.api, s.namespace, "")
	if err != nil {
		return nil, err
	}
	var out []replica.Handle
	for i := range pods {
		p := &pods[i]
		if !p.DeletionTimestamp.IsZero() {
			continue
		}
		h, err := s.handle(p)
		if errors.Is(err, errNotStarted) || (err == nil && h.Endpoint == "") {
			s.log.Info("deleting a replica pod that never started", "pod", p.Name)
			uid := p.UID
			derr := s.writer.Delete(ctx, p, client.GracePeriodSeconds(0), client.Preconditions{UID: &uid})
			if derr != nil && !apierrors.IsNotFound(derr) && !apierrors.IsConflict(derr) {
				return nil, fmt.Errorf("delete replica pod %s that never started: %w", p.Name, derr)
			}
			continue
		}
		if err != nil {
			s.log.Warn("skipping replica pod without a usable handle", "pod", p.Name, "err", err)
			continue
		}
		out = append(out, h)
	}
	return out, nil
}

// PutReplica does nothing: the pod is the record.
func (s *Store) PutReplica(context.Context, replica.Handle) error { return nil }

// DeleteReplica does nothing: deleting the pod deletes the record.
func (s *Store) DeleteReplica(context.Context, string) error { return nil }

// listReplicaPods lists the replica pods of one deployment, or of every
// deployment and pool when deployment is "".
func listReplicaPods(ctx context.Context, r client.Reader, namespace, deployment string) ([]corev1.Pod, error) {
	if deployment != "" {
		return listPods(ctx, r, namespace, client.MatchingLabels{LabelDeployment: deployment})
	}
	pods, err := listPods(ctx, r, namespace, client.HasLabels{LabelDeployment})
	if err != nil {
		return nil, err
	}
	pooled, err := listPods(ctx, r, namespace, client.HasLabels{LabelPool})
	return append(pods, pooled...), err
}

func listPods(ctx context.Context, r client.Reader, namespace string, sel client.ListOption) ([]corev1.Pod, error) {
	var pods corev1.PodList
	if err := r.List(ctx, &pods, client.InNamespace(namespace), sel); err != nil {
		return nil, fmt.Errorf("list replica pods in %q: %w", namespace, err)
	}
	return pods.Items, nil
}

// errNotStarted marks a pod that Start had not returned for: it has no IP
// yet. ListReplicas deletes such pods instead of adopting them.
var errNotStarted = errors.New("replica pod not started")
