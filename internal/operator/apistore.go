package operator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// APIStore is the admin API's deployment store (api.Store) in a cluster:
// deployments are the ModelDeployments of one namespace, so the API, the
// CLI, kubectl and GitOps tools all read and write the same objects. Reads
// go to the API server (not a cache), so a client reads its own writes.
//
// Errors wrap store.ErrNotFound, store.ErrExists, and store.ErrUnavailable
// when the API server cannot be reached or refuses for a reason that is not
// the request's fault.
type APIStore struct {
	reader    client.Reader
	writer    client.Writer
	namespace string
}

// NewAPIStore returns an APIStore over the ModelDeployments in namespace.
func NewAPIStore(reader client.Reader, writer client.Writer, namespace string) *APIStore {
	return &APIStore{reader: reader, writer: writer, namespace: namespace}
}

// CreateDeployment creates a ModelDeployment from d.
func (s *APIStore) CreateDeployment(ctx context.Context, d serving.Deployment) (serving.Deployment, error) {
	md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: s.namespace}}
	md.Spec.Spec = d.Spec
	if err := s.writer.Create(ctx, md); err != nil {
		return serving.Deployment{}, s.err(err, "create", d.Name)
	}
	return apiDeployment(md), nil
}

// GetDeployment returns the named ModelDeployment, being deleted or not.
func (s *APIStore) GetDeployment(ctx context.Context, name string) (serving.Deployment, error) {
	var md v1alpha1.ModelDeployment
	if err := s.reader.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, &md); err != nil {
		return serving.Deployment{}, s.err(err, "get", name)
	}
	return apiDeployment(&md), nil
}

// ListDeployments returns every ModelDeployment of the namespace.
func (s *APIStore) ListDeployments(ctx context.Context) ([]serving.Deployment, error) {
	var list v1alpha1.ModelDeploymentList
	if err := s.reader.List(ctx, &list, client.InNamespace(s.namespace)); err != nil {
		return nil, s.err(err, "list", "")
	}
	out := make([]serving.Deployment, len(list.Items))
	for i := range list.Items {
		out[i] = apiDeployment(&list.Items[i])
	}
	return out, nil
}

// UpdateDeployment applies fn to the named ModelDeployment's spec with
// optimistic concurrency: a write that races another is retried on the
// fresh object. fn's error is returned unchanged and nothing is written.
func (s *APIStore) UpdateDeployment(ctx context.Context, name string, fn func(*serving.Deployment) error) (serving.Deployment, error) {
	var out serving.Deployment
	var fnErr error
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var md v1alpha1.ModelDeployment
		if err := s.reader.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, &md); err != nil {
			return err
		}
		old := apiDeployment(&md)
		next, _, ferr, err := store.ApplyUpdate(old, fn, time.Now())
		if ferr != nil {
			fnErr = ferr
			return ferr
		}
		if err != nil {
			return err
		}
		md.Spec.Spec = next.Spec
		if err := s.writer.Update(ctx, &md); err != nil {
			return err
		}
		out = apiDeployment(&md)
		return nil
	})
	switch {
	case fnErr != nil:
		return serving.Deployment{}, fnErr
	case err != nil:
		return serving.Deployment{}, s.err(err, "update", name)
	}
	return out, nil
}

// DeleteDeployment deletes the named ModelDeployment; the operator then
// drains and stops its replicas before the object goes.
func (s *APIStore) DeleteDeployment(ctx context.Context, name string) error {
	md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.namespace}}
	if err := s.writer.Delete(ctx, md); err != nil {
		return s.err(err, "delete", name)
	}
	return nil
}

// err maps an API server error to the store's errors.
func (s *APIStore) err(err error, op, name string) error {
	what := fmt.Sprintf("ModelDeployment %s/%s", s.namespace, name)
	if name == "" {
		what = "ModelDeployments in " + s.namespace
	}
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	case apierrors.IsAlreadyExists(err):
		return fmt.Errorf("%s: %w", what, store.ErrExists)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return fmt.Errorf("%s %s: the API server refused it: %v", op, what, err)
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s %s: the Kubernetes API server refused the operator's credentials (check its RBAC): %v: %w", op, what, err, store.ErrUnavailable)
	case errors.Is(err, context.Canceled):
		return err
	}
	return fmt.Errorf("%s %s: the Kubernetes API server is unavailable: %v: %w", op, what, err, store.ErrUnavailable)
}

// apiDeployment is md as the admin API shows it: the spec as written
// (defaulted, as `ebb up` stores it), the last status the leader wrote,
// and the time of the object's latest change.
func apiDeployment(md *v1alpha1.ModelDeployment) serving.Deployment {
	d := serving.Deployment{
		Name:       md.Name,
		Spec:       *md.Spec.Spec.DeepCopy(),
		Status:     *md.Status.Status.DeepCopy(),
		Generation: md.Generation,
		CreatedAt:  md.CreationTimestamp.Time,
		UpdatedAt:  md.CreationTimestamp.Time,
	}
	d.Spec.Default()
	d.UpdatedAt = specChangedAt(&md.ObjectMeta, d.UpdatedAt)
	return d
}
