package operator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/internal/store"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// objectKind names a kind of ebb's objects for objectErr.
type objectKind struct {
	kind     string // ModelRoute
	resource string // modelroutes, as RBAC and the CRD's file name say
}

// objectErr maps an API server error about an object of kind k (named
// name, or every such object of namespace when name is "") to the
// stores' errors: store.ErrNotFound, ErrExists, ErrConflict (a write that
// raced others too often) and ErrUnavailable, each saying what to do.
func objectErr(err error, k objectKind, namespace, op, name string) error {
	what := fmt.Sprintf("%s %s/%s", k.kind, namespace, name)
	if name == "" {
		what = k.kind + "s in " + namespace
	}
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	case apierrors.IsAlreadyExists(err):
		return fmt.Errorf("%s: %w", what, store.ErrExists)
	case apierrors.IsConflict(err):
		return fmt.Errorf("%s %s: it changed concurrently too often: %v: %w", op, what, err, store.ErrConflict)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return fmt.Errorf("%s %s: the API server refused it: %v", op, what, err)
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s %s: the Kubernetes API server refused the operator's credentials (check its RBAC for %s): %v: %w", op, what, k.resource, err, store.ErrUnavailable)
	case meta.IsNoMatchError(err):
		return fmt.Errorf("%s %s: the cluster has no %s CRD (CRDs are not upgraded with the chart): apply it with kubectl apply --server-side -f deploy/crds/serving.ebb.dev_%s.yaml: %w", op, what, k.kind, k.resource, store.ErrUnavailable)
	case errors.Is(err, context.Canceled):
		return err
	}
	return fmt.Errorf("%s %s: the Kubernetes API server is unavailable: %v: %w", op, what, err, store.ErrUnavailable)
}

// specChangedAt is when an object's spec (or metadata) last changed, as
// its managed fields say: the latest write that was not to a subresource
// (status, scale), and not before since (its creation).
func specChangedAt(om *metav1.ObjectMeta, since time.Time) time.Time {
	at := since
	for _, f := range om.ManagedFields {
		if f.Time != nil && f.Time.After(at) && f.Subresource == "" {
			at = f.Time.Time
		}
	}
	return at
}
