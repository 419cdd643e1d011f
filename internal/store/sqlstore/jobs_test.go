package sqlstore_test

import (
	"context"
	"testing"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
	"github.com/ebb-ml/ebb/internal/store/storetest"
)

func TestJobConformance(t *testing.T) {
	each(t, false, func(t *testing.T, b backend) {
		storetest.RunJobs(t, func(t *testing.T) store.JobStore {
			return b.openT(t, b.newDB(t))
		})
	})
}

// TestJobConformanceTwoStores runs the job suite against two Stores on one
// database, as two ebb processes sharing it.
func TestJobConformanceTwoStores(t *testing.T) {
	each(t, true, func(t *testing.T, b backend) {
		storetest.RunJobs(t, func(t *testing.T) store.JobStore {
			where := b.newDB(t)
			return &alternating{stores: [2]*sqlstore.Store{b.openT(t, where), b.openT(t, where)}}
		})
	})
}

func (a *alternating) CreateJob(ctx context.Context, j serving.Job) (serving.Job, error) {
	return a.next().CreateJob(ctx, j)
}
func (a *alternating) GetJob(ctx context.Context, name string) (serving.Job, error) {
	return a.next().GetJob(ctx, name)
}
func (a *alternating) ListJobs(ctx context.Context) ([]serving.Job, error) {
	return a.next().ListJobs(ctx)
}
func (a *alternating) UpdateJob(ctx context.Context, name string, fn func(*serving.Job) error) (serving.Job, error) {
	return a.next().UpdateJob(ctx, name, fn)
}
func (a *alternating) DeleteJob(ctx context.Context, name string) error {
	return a.next().DeleteJob(ctx, name)
}
func (a *alternating) PutJobChunk(ctx context.Context, c store.JobChunk) error {
	return a.next().PutJobChunk(ctx, c)
}
func (a *alternating) ListJobChunks(ctx context.Context, job string) ([]store.JobChunk, error) {
	return a.next().ListJobChunks(ctx, job)
}
