package operator

import (
	"context"
	"errors"
	"fmt"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// poolingStore is the control loop's store where the cluster has the
// ModelPool CRD: the Store, and the ModelPools as store.PoolStore. The
// loop reads pools only (ListPools when it starts, GetPool when the
// reconciler says one changed); a ModelPool being deleted, or whose spec
// does not validate, reads as absent, and why it is invalid is kept for
// its status, as Store does for ModelDeployments. Writes are the admin
// API's (PoolStore).
type poolingStore struct {
	*Store
	pools *PoolStore // reads from the API server
}

var _ store.PoolStore = (*poolingStore)(nil)

// ListPools returns every live, valid ModelPool.
func (s *poolingStore) ListPools(ctx context.Context) ([]serving.Pool, error) {
	items, err := s.pools.list(ctx)
	if err != nil {
		return nil, err
	}
	var out []serving.Pool
	for i := range items {
		if p, ok := s.convertPool(&items[i]); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// GetPool returns the named ModelPool, or an error wrapping
// store.ErrNotFound when it does not exist, is being deleted or is
// invalid.
func (s *poolingStore) GetPool(ctx context.Context, name string) (serving.Pool, error) {
	var mp v1alpha1.ModelPool
	err := s.pools.reader.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, &mp)
	if err != nil {
		err = s.pools.err(err, "get", name)
		if errors.Is(err, store.ErrNotFound) {
			s.forget(poolSeenKey(name))
		}
		return serving.Pool{}, err
	}
	p, ok := s.convertPool(&mp)
	if !ok {
		return serving.Pool{}, fmt.Errorf("ModelPool %s/%s is being deleted or invalid: %w", s.namespace, name, store.ErrNotFound)
	}
	return p, nil
}

// convertPool returns mp as the loop sees it, and false when the loop
// must treat it as absent.
func (s *poolingStore) convertPool(mp *v1alpha1.ModelPool) (serving.Pool, bool) {
	key := poolSeenKey(mp.Name)
	if !mp.DeletionTimestamp.IsZero() {
		s.forget(key)
		return serving.Pool{}, false
	}
	p := mp.Pool()
	seen := seenSpec{generation: mp.Generation}
	if err := p.Validate(); err != nil {
		seen.invalid = err.Error()
	}
	s.mu.Lock()
	s.seen[key] = seen
	s.mu.Unlock()
	return p, seen.invalid == ""
}

// CreatePool, UpdatePool and DeletePool complete store.PoolStore; the
// loop never writes pools.
func (s *poolingStore) CreatePool(ctx context.Context, p serving.Pool) (serving.Pool, error) {
	return s.pools.CreatePool(ctx, p)
}

func (s *poolingStore) UpdatePool(ctx context.Context, name string, fn func(*serving.Pool) error) (serving.Pool, error) {
	return s.pools.UpdatePool(ctx, name, fn)
}

func (s *poolingStore) DeletePool(ctx context.Context, name string) error {
	return s.pools.DeletePool(ctx, name)
}

// poolSeenKey is the key of a pool in Store.seen, beside the
// ModelDeployments' names: the loop's key of the pool's replicas.
func poolSeenKey(name string) string { return serving.PoolKey(name) }
