package operator

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/replica/kube"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Multi-model pools in a cluster: ModelPools (api/v1alpha1).
//
//   - PoolStore is the admin API's store of pools, over the ModelPools of
//     the namespace, as RouteStore is of routes: the API, the CLI, kubectl
//     and GitOps tools read and write the same objects.
//   - The control loop reads them through the operator's Store
//     (store.PoolStore: ListPools, GetPool), which leaves out a ModelPool
//     that is being deleted or whose spec does not validate, and runs a
//     pool's replicas as pods (replica/kube labels them LabelPool, never
//     LabelDeployment, so no ModelDeployment's Service selects them), each
//     owned by its ModelPool (PodCustomizer), as `ebb up` runs them as
//     processes.
//   - A reconciler of ModelPools (poolreconcile.go) tells the loop of every
//     change and deletes the pool's ended pods; the status writer copies
//     the loop's status of each pool to its ModelPool, and of each pooled
//     model to its ModelDeployment (status.pool and the replicas that hold
//     it, with their endpoints), which is what the gateways route by
//     (discovery).

// Pool pods' labels, as replica/kube sets them.
const (
	LabelPool     = kube.LabelPool
	LabelPoolSlot = kube.LabelPoolSlot
)

// PoolStore is the admin API's store of pools (store.PoolStore) in a
// cluster: the ModelPools of one namespace. Reads go to the API server
// (not a cache), so a client reads its own writes. Errors wrap
// store.ErrNotFound, store.ErrExists and store.ErrUnavailable as
// APIStore's do.
type PoolStore struct {
	reader    client.Reader
	writer    client.Writer
	namespace string
}

var _ store.PoolStore = (*PoolStore)(nil)

// NewPoolStore returns a PoolStore over the ModelPools in namespace.
func NewPoolStore(reader client.Reader, writer client.Writer, namespace string) *PoolStore {
	return &PoolStore{reader: reader, writer: writer, namespace: namespace}
}

// CreatePool creates a ModelPool from p.
func (s *PoolStore) CreatePool(ctx context.Context, p serving.Pool) (serving.Pool, error) {
	mp := &v1alpha1.ModelPool{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: s.namespace}}
	mp.Spec.PoolSpec = *p.Spec.DeepCopy()
	if err := s.writer.Create(ctx, mp); err != nil {
		return serving.Pool{}, s.err(err, "create", p.Name)
	}
	return apiPool(mp), nil
}

// GetPool returns the named ModelPool.
func (s *PoolStore) GetPool(ctx context.Context, name string) (serving.Pool, error) {
	var mp v1alpha1.ModelPool
	if err := s.reader.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, &mp); err != nil {
		return serving.Pool{}, s.err(err, "get", name)
	}
	return apiPool(&mp), nil
}

// ListPools returns every ModelPool of the namespace, sorted by name.
func (s *PoolStore) ListPools(ctx context.Context) ([]serving.Pool, error) {
	items, err := s.list(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]serving.Pool, len(items))
	for i := range items {
		out[i] = apiPool(&items[i])
	}
	return out, nil
}

func (s *PoolStore) list(ctx context.Context) ([]v1alpha1.ModelPool, error) {
	var list v1alpha1.ModelPoolList
	if err := s.reader.List(ctx, &list, client.InNamespace(s.namespace)); err != nil {
		return nil, s.err(err, "list", "")
	}
	slices.SortFunc(list.Items, func(a, b v1alpha1.ModelPool) int { return strings.Compare(a.Name, b.Name) })
	return list.Items, nil
}

// UpdatePool applies fn to the named ModelPool's spec with optimistic
// concurrency (store.ApplyPoolUpdate): a write that races another is
// retried on the fresh object. fn's error is returned unchanged and
// nothing is written.
func (s *PoolStore) UpdatePool(ctx context.Context, name string, fn func(*serving.Pool) error) (serving.Pool, error) {
	var out serving.Pool
	var fnErr error
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var mp v1alpha1.ModelPool
		if err := s.reader.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, &mp); err != nil {
			return err
		}
		next, _, ferr, err := store.ApplyPoolUpdate(apiPool(&mp), fn, time.Now())
		if ferr != nil {
			fnErr = ferr
			return ferr
		}
		if err != nil {
			return err
		}
		mp.Spec.PoolSpec = next.Spec
		if err := s.writer.Update(ctx, &mp); err != nil {
			return err
		}
		out = apiPool(&mp)
		return nil
	})
	switch {
	case fnErr != nil:
		return serving.Pool{}, fnErr
	case err != nil:
		return serving.Pool{}, s.err(err, "update", name)
	}
	return out, nil
}

// DeletePool deletes the named ModelPool; the control loop then stops its
// replica pods (and the garbage collector would: the ModelPool owns them).
func (s *PoolStore) DeletePool(ctx context.Context, name string) error {
	mp := &v1alpha1.ModelPool{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.namespace}}
	if err := s.writer.Delete(ctx, mp); err != nil {
		return s.err(err, "delete", name)
	}
	return nil
}

func (s *PoolStore) err(err error, op, name string) error {
	return objectErr(err, objectKind{kind: "ModelPool", resource: "modelpools"}, s.namespace, op, name)
}

// apiPool is mp as the admin API shows it, with the time of the object's
// latest change.
func apiPool(mp *v1alpha1.ModelPool) serving.Pool {
	p := mp.Pool()
	p.UpdatedAt = specChangedAt(&mp.ObjectMeta, p.UpdatedAt)
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p
}
