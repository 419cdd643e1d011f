package sqlstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
	"github.com/ebb-ml/ebb/internal/store/storetest"
)

func TestRolloutConformance(t *testing.T) {
	each(t, false, func(t *testing.T, b backend) {
		storetest.RunRollouts(t, func(t *testing.T) storetest.RolloutStore {
			return b.openT(t, b.newDB(t))
		})
	})
}

// TestRolloutConformanceTwoStores runs the rollout suite against two
// Stores on one database, as two ebb processes (two operators) sharing it.
func TestRolloutConformanceTwoStores(t *testing.T) {
	each(t, true, func(t *testing.T, b backend) {
		storetest.RunRollouts(t, func(t *testing.T) storetest.RolloutStore {
			where := b.newDB(t)
			return &alternating{stores: [2]*sqlstore.Store{b.openT(t, where), b.openT(t, where)}}
		})
	})
}

func (a *alternating) CreateRollout(ctx context.Context, r store.Rollout) (store.Rollout, error) {
	return a.next().CreateRollout(ctx, r)
}
func (a *alternating) GetRollout(ctx context.Context, id string) (store.Rollout, error) {
	return a.next().GetRollout(ctx, id)
}
func (a *alternating) ActiveRollout(ctx context.Context, deployment, kind string) (store.Rollout, error) {
	return a.next().ActiveRollout(ctx, deployment, kind)
}
func (a *alternating) ListRollouts(ctx context.Context, deployment string) ([]store.Rollout, error) {
	return a.next().ListRollouts(ctx, deployment)
}
func (a *alternating) UpdateRollout(ctx context.Context, id string, fn func(*store.Rollout) error) (store.Rollout, error) {
	return a.next().UpdateRollout(ctx, id, fn)
}
func (a *alternating) DeleteRollouts(ctx context.Context, deployment string) error {
	return a.next().DeleteRollouts(ctx, deployment)
}

// TestListRolloutsBounded checks that ListRollouts returns the
// RolloutsListed most recent rollouts of each deployment, and older ones
// only while they are active.
func TestListRolloutsBounded(t *testing.T) {
	each(t, false, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.openT(t, b.newDB(t))
		create := func(deployment, kind string, n int) {
			r := storetest.Rollout(deployment, kind)
			r.ID = fmt.Sprintf("%s-%s-%d", deployment, kind, n)
			r.State = json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))
			if _, err := s.CreateRollout(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		create("diabetes", store.RolloutShadow, 0) // stays active, behind the newest 50
		const total = sqlstore.RolloutsListed + 5
		for n := 1; n <= total; n++ {
			create("diabetes", store.RolloutCanary, n)
			if n < total {
				if _, err := s.UpdateRollout(ctx, fmt.Sprintf("diabetes-canary-%d", n), func(r *store.Rollout) error {
					r.Active = false
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
		}
		create("iris", store.RolloutCanary, 1)

		var want []string
		for n := total; n > total-sqlstore.RolloutsListed; n-- {
			want = append(want, fmt.Sprintf("diabetes-canary-%d", n))
		}
		want = append(want, "diabetes-shadow-0")
		for _, tt := range []struct {
			deployment string
			want       []string
		}{
			{"diabetes", want},
			{"", append([]string{"iris-canary-1"}, want...)},
		} {
			got, err := s.ListRollouts(ctx, tt.deployment)
			if err != nil {
				t.Fatalf("ListRollouts(%q): %v", tt.deployment, err)
			}
			var ids []string
			for _, r := range got {
				ids = append(ids, r.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.want) {
				t.Errorf("ListRollouts(%q) = %v,\nwant %v", tt.deployment, ids, tt.want)
			}
		}
	})
}
