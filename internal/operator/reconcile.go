package operator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// notifier is the part of control.Controller the reconciler drives.
type notifier interface {
	Notify(name string)
}

// reconciler is the controller-runtime reconciler of ModelDeployments. It
// never creates or deletes pods: it keeps the finalizer and the Service,
// and tells the control loop, which owns the replicas, that something
// changed.
type reconciler struct {
	client client.Client // writes
	cache  client.Reader // the manager's cache
	api    client.Reader // uncached reads (pods during deletion)
	scheme *runtime.Scheme
	ctl    notifier
	log    *slog.Logger
	// balloons reads balloon pods (a cache of the pods labelled
	// LabelBalloon); cold configures warm pools and pre-pull DaemonSets.
	balloons client.Reader
	cold     ColdStartOptions
	events   record.EventRecorder
}

// Reconcile brings one ModelDeployment's finalizer and Service in line and
// notifies the control loop. While the ModelDeployment is being deleted it
// keeps the finalizer until the loop has stopped every replica pod.
func (r *reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var md v1alpha1.ModelDeployment
	err := r.cache.Get(ctx, req.NamespacedName, &md)
	if apierrors.IsNotFound(err) {
		r.ctl.Notify(req.Name)
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	r.ctl.Notify(md.Name)
	// Warm pool and pre-pull first: while md is being deleted they remove
	// their objects at once rather than when the garbage collector runs.
	requeue, err := r.ensureBalloons(ctx, &md)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.ensurePrePull(ctx, &md); err != nil {
		return ctrl.Result{}, err
	}
	again := ctrl.Result{}
	if requeue {
		again.RequeueAfter = time.Second
	}
	if !md.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, &md)
	}
	if !controllerutil.ContainsFinalizer(&md, Finalizer) {
		if err := r.patchFinalizers(ctx, &md, append(md.Finalizers, Finalizer)); err != nil {
			return ctrl.Result{}, err
		}
	}
	if err := r.ensureService(ctx, &md); err != nil {
		return ctrl.Result{}, err
	}
	pods, err := listReplicaPods(ctx, r.cache, md.Namespace, md.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	return again, r.deleteEnded(ctx, pods)
}

// deleteEnded deletes the pods whose replica ended (phase Failed or
// Succeeded: replica pods never restart). The control loop has seen them
// end through the backend's Wait and forgotten them; nothing else would
// delete them, and they would hold the finalizer forever.
func (r *reconciler) deleteEnded(ctx context.Context, pods []corev1.Pod) error {
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil || (p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded) {
			continue
		}
		uid := p.UID
		err := r.client.Delete(ctx, p, client.Preconditions{UID: &uid})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete ended replica pod %s: %w", p.Name, err)
		}
		r.log.Info("deleted ended replica pod", "deployment", p.Labels[LabelDeployment], "pod", p.Name, "phase", p.Status.Phase)
	}
	return nil
}

// finalize removes the finalizer once no replica pod of md is left; the
// control loop, told the ModelDeployment is gone, drains and stops them.
func (r *reconciler) finalize(ctx context.Context, md *v1alpha1.ModelDeployment) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(md, Finalizer) {
		return ctrl.Result{}, nil
	}
	pods, err := listReplicaPods(ctx, r.api, md.Namespace, md.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.deleteEnded(ctx, pods); err != nil {
		return ctrl.Result{}, err
	}
	if n := len(pods); n > 0 {
		r.log.Debug("waiting for replica pods to stop before removing the finalizer", "deployment", md.Name, "pods", n)
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	// The Service would go with the ModelDeployment (owner reference), but
	// only when the garbage collector gets to it; delete it now.
	var svc corev1.Service
	err = r.cache.Get(ctx, client.ObjectKey{Namespace: md.Namespace, Name: ServiceName(md.Name)}, &svc)
	if err == nil && metav1.IsControlledBy(&svc, md) {
		uid := svc.UID
		if err := r.client.Delete(ctx, &svc, client.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return ctrl.Result{}, fmt.Errorf("delete Service %s: %w", svc.Name, err)
		}
	}
	var keep []string
	for _, f := range md.Finalizers {
		if f != Finalizer {
			keep = append(keep, f)
		}
	}
	if err := r.patchFinalizers(ctx, md, keep); err != nil {
		return ctrl.Result{}, err
	}
	r.log.Info("replicas stopped; ModelDeployment released", "deployment", md.Name)
	return ctrl.Result{}, nil
}

// patchFinalizers sets md's finalizers with a JSON merge patch that fails
// when md changed since it was read (its resourceVersion is in the patch).
func (r *reconciler) patchFinalizers(ctx context.Context, md *v1alpha1.ModelDeployment, finalizers []string) error {
	if finalizers == nil {
		finalizers = []string{}
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"finalizers":      finalizers,
		"resourceVersion": md.ResourceVersion,
	}})
	if err != nil {
		return err
	}
	if err := r.client.Patch(ctx, md, client.RawPatch("application/merge-patch+json", patch)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("set finalizers of ModelDeployment %s: %w", md.Name, err)
	}
	return nil
}

// setup registers the reconciler with mgr: it watches ModelDeployments and
// the pods, Services and DaemonSets they own, and the balloon pods in
// balloons (a cache mgr runs).
func (r *reconciler) setup(mgr ctrl.Manager, balloons cache.Cache, workers int) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ModelDeployment{}).
		Owns(&corev1.Pod{}).
		Owns(&corev1.Service{}).
		Owns(&appsv1.DaemonSet{}).
		WatchesRawSource(source.Kind(balloons, client.Object(&corev1.Pod{}),
			handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &v1alpha1.ModelDeployment{}, handler.OnlyControllerOwner()))).
		// Names are checked for uniqueness per process; tests run
		// several operators (restarts) in one.
		WithOptions(controller.Options{MaxConcurrentReconciles: workers, SkipNameValidation: ptr(true)}).
		Complete(r)
}

// statusWriter writes every ModelDeployment's status when it differs from
// what the operator observes, once per period. Only the leader runs it.
type statusWriter struct {
	client    client.Client
	cache     client.Reader
	namespace string
	observe   func(md *v1alpha1.ModelDeployment) observation
	// observePool, when set (the cluster has ModelPools), gives each
	// ModelPool's status.
	observePool func(mp *v1alpha1.ModelPool) v1alpha1.ModelPoolStatus
	clock       clock.WithTicker
	every       time.Duration
	log         *slog.Logger
}

// Start writes statuses until ctx ends (a manager.Runnable).
func (w *statusWriter) Start(ctx context.Context) error {
	t := w.clock.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			w.writeAll(ctx)
		}
	}
}

// writeAll patches the status of each ModelDeployment that changed.
func (w *statusWriter) writeAll(ctx context.Context) {
	var list v1alpha1.ModelDeploymentList
	if err := w.cache.List(ctx, &list, client.InNamespace(w.namespace)); err != nil {
		w.log.Warn("list ModelDeployments for status", "err", err)
		return
	}
	for i := range list.Items {
		md := &list.Items[i]
		if err := w.write(ctx, md); err != nil && ctx.Err() == nil {
			w.log.Warn("write ModelDeployment status", "deployment", md.Name, "err", err)
		}
	}
	if w.observePool == nil {
		return
	}
	var pools v1alpha1.ModelPoolList
	if err := w.cache.List(ctx, &pools, client.InNamespace(w.namespace)); err != nil {
		w.log.Warn("list ModelPools for status", "err", err)
		return
	}
	for i := range pools.Items {
		mp := &pools.Items[i]
		want := w.observePool(mp)
		if sameJSON(mp.Status, want) {
			continue
		}
		patched := mp.DeepCopy()
		patched.Status = want
		err := w.client.Status().Patch(ctx, patched, client.MergeFrom(mp))
		if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
			w.log.Warn("write ModelPool status", "pool", mp.Name, "err", err)
		}
	}
}

func (w *statusWriter) write(ctx context.Context, md *v1alpha1.ModelDeployment) error {
	want := desiredStatus(md, w.observe(md), w.clock.Now())
	if sameJSON(md.Status, want) {
		return nil
	}
	patched := md.DeepCopy()
	patched.Status = want
	err := w.client.Status().Patch(ctx, patched, client.MergeFrom(md))
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// sameJSON compares statuses as the API server stores them.
func sameJSON[T any](a, b T) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

func ptr[T any](v T) *T { return &v }
