package operator

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/serving"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// poolReconciler is the controller-runtime reconciler of ModelPools. Like
// the ModelDeployments' it never creates pods: it tells the control loop
// that a pool changed (its key, serving.PoolKey) and deletes the pool's
// pods whose replica ended, which nothing else would.
type poolReconciler struct {
	ctl  notifier
	pods client.Reader // the pool pods' cache (poolPodCacheOptions)
	del  *reconciler   // deleteEnded
	log  *slog.Logger
}

// Reconcile notifies the loop and deletes the pool's ended pods.
func (r *poolReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	r.ctl.Notify(serving.PoolKey(req.Name))
	var pods corev1.PodList
	if err := r.pods.List(ctx, &pods, client.InNamespace(req.Namespace), client.MatchingLabels{LabelPool: req.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list pods of pool %s: %w", req.Name, err)
	}
	return ctrl.Result{}, r.del.deleteEnded(ctx, pods.Items)
}

// setupPools registers the reconciler of ModelPools with mgr: it watches
// ModelPools and, through pods (a cache of the pool pods that mgr runs),
// the pods they own.
func (r *poolReconciler) setup(mgr ctrl.Manager, pods cache.Cache, workers int) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("modelpool").
		For(&v1alpha1.ModelPool{}).
		WatchesRawSource(source.Kind(pods, client.Object(&corev1.Pod{}),
			handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &v1alpha1.ModelPool{}, handler.OnlyControllerOwner()))).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers, SkipNameValidation: ptr(true)}).
		Complete(r)
}

// poolPodCacheOptions are the options of the cache of pool pods: the
// namespace's pods labelled LabelPool (the manager's cache holds only
// those labelled LabelDeployment).
func poolPodCacheOptions(o cache.Options, namespace string) cache.Options {
	has, _ := labels.NewRequirement(LabelPool, selection.Exists, nil)
	o.DefaultNamespaces = map[string]cache.Config{namespace: {}}
	o.ByObject = map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Label: labels.NewSelector().Add(*has)},
	}
	return o
}

// hasPools reports whether the cluster serves the ModelPool CRD. Without
// it (CRDs are not upgraded with the chart) the operator runs without
// pools: the API refuses spec.pool and /v1/pools says how to install it.
func hasPools(mapper meta.RESTMapper) (bool, error) {
	gk := schema.GroupKind{Group: v1alpha1.GroupVersion.Group, Kind: "ModelPool"}
	_, err := mapper.RESTMapping(gk, v1alpha1.GroupVersion.Version)
	switch {
	case err == nil:
		return true, nil
	case meta.IsNoMatchError(err):
		return false, nil
	}
	return false, fmt.Errorf("operator: is the ModelPool CRD installed: %w", err)
}

// observePool returns mp's status for what the control loop observes.
func (o *Operator) observePool(mp *v1alpha1.ModelPool) v1alpha1.ModelPoolStatus {
	st := v1alpha1.ModelPoolStatus{PoolStatus: o.ctl.PoolStatus(mp.Name), ObservedGeneration: mp.Status.ObservedGeneration}
	gen, invalid, seen := o.store.Observed(poolSeenKey(mp.Name))
	if seen {
		st.ObservedGeneration = gen
	}
	if invalid != "" {
		st.Reason, st.Failure = "invalid spec: "+invalid, "invalid spec: "+invalid
	}
	return st
}
