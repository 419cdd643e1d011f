package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// RunJobs runs the batch job conformance suite (store.JobStore). open
// must return a new, empty store for each call and arrange (with
// t.Cleanup) for it to be closed.
func RunJobs(t *testing.T, open func(t *testing.T) store.JobStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.JobStore)
	}{
		{"CreateGet", testJobCreateGet},
		{"CreateExists", testJobCreateExists},
		{"GetMissing", testJobGetMissing},
		{"List", testJobList},
		{"Update", testJobUpdate},
		{"UpdateFnError", testJobUpdateFnError},
		{"UpdateMissing", testJobUpdateMissing},
		{"UpdateConcurrent", testJobUpdateConcurrent},
		{"Delete", testJobDelete},
		{"Chunks", testJobChunks},
		{"ChunksConcurrent", testJobChunksConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, open(t))
		})
	}
}

// Job returns a valid, defaulted, pending job named name, for tests.
func Job(name string) serving.Job {
	j := serving.Job{
		Name: name,
		Spec: serving.JobSpec{
			Input: serving.JobInput{URI: "file:///data/" + name + ".csv", Columns: []serving.TensorColumns{
				{Tensor: "input-0", Columns: []string{"age", "bmi", "bp"}},
			}, IDColumn: "id"},
			Deployment: "diabetes",
			Output:     serving.JobOutput{URI: "s3://results/" + name + ".parquet"},
			Deadline:   time.Date(2030, 3, 4, 6, 0, 0, 0, time.UTC),
			Lease: serving.Lease{MaxReplicas: 4, MaxReplicaHours: 2.5, Windows: []serving.ScheduleWindow{
				{Name: "weekend", Days: []string{"Sat-Sun"}, Start: "00:00", End: "23:59", TimeZone: "Europe/Paris"},
			}},
		},
		Status: serving.JobStatus{Phase: serving.JobPending},
	}
	j.Spec.Default()
	return j
}

func mustCreateJob(t *testing.T, s store.JobStore, j serving.Job) serving.Job {
	t.Helper()
	got, err := s.CreateJob(context.Background(), j)
	if err != nil {
		t.Fatalf("CreateJob(%q): %v", j.Name, err)
	}
	return got
}

func mustGetJob(t *testing.T, s store.JobStore, name string) serving.Job {
	t.Helper()
	got, err := s.GetJob(context.Background(), name)
	if err != nil {
		t.Fatalf("GetJob(%q): %v", name, err)
	}
	return got
}

func testJobCreateGet(t *testing.T, s store.JobStore) {
	in := Job("weekly")
	in.Generation, in.CreatedAt = 7, time.Unix(1, 0) // ignored: the store's
	before := time.Now().Add(-time.Second)
	got := mustCreateJob(t, s, in)
	if got.Generation != 1 || got.CreatedAt.Before(before) || got.CreatedAt.Location() != time.UTC || !got.UpdatedAt.Equal(got.CreatedAt) {
		t.Errorf("created = generation %d, times %v, %v; want 1 and a recent UTC time twice", got.Generation, got.CreatedAt, got.UpdatedAt)
	}
	want := in
	want.Generation, want.CreatedAt, want.UpdatedAt = 1, got.CreatedAt, got.UpdatedAt
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CreateJob returned (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, mustGetJob(t, s, in.Name)); diff != "" {
		t.Errorf("GetJob after create (-want +got):\n%s", diff)
	}
}

func testJobCreateExists(t *testing.T, s store.JobStore) {
	mustCreateJob(t, s, Job("weekly"))
	if _, err := s.CreateJob(context.Background(), Job("weekly")); !errors.Is(err, store.ErrExists) {
		t.Errorf("CreateJob twice = %v; want ErrExists", err)
	}
}

func testJobGetMissing(t *testing.T, s store.JobStore) {
	if _, err := s.GetJob(context.Background(), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetJob(missing) = %v; want ErrNotFound", err)
	}
}

func testJobList(t *testing.T, s store.JobStore) {
	got, err := s.ListJobs(context.Background())
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("ListJobs(empty) = %v, %v; want an empty slice", got, err)
	}
	// Oldest first, whatever the names.
	for _, name := range []string{"zeta", "alpha", "mid"} {
		mustCreateJob(t, s, Job(name))
	}
	got, err = s.ListJobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, j := range got {
		names = append(names, j.Name)
	}
	if diff := cmp.Diff([]string{"zeta", "alpha", "mid"}, names); diff != "" {
		t.Errorf("ListJobs order (-want +got):\n%s", diff)
	}
}

func testJobUpdate(t *testing.T, s store.JobStore) {
	ctx := context.Background()
	created := mustCreateJob(t, s, Job("weekly"))
	eta := time.Date(2030, 3, 3, 12, 0, 0, 0, time.UTC)
	got, err := s.UpdateJob(ctx, "weekly", func(j *serving.Job) error {
		j.Status.Phase = serving.JobRunning
		j.Status.RowsDone, j.Status.RowsTotal = 3000, 100000
		j.Status.ETA = &eta
		j.Status.Plan = &serving.JobPlan{Replicas: 3, RowsPerSecondPerReplica: 12.5, Finish: eta, PlannedAt: eta.Add(-time.Hour)}
		j.Status.AddEvent(eta, "planned %d replicas", 3)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Generation != 1 || got.Status.Phase != serving.JobRunning || got.UpdatedAt.Before(created.UpdatedAt) {
		t.Errorf("after a status update: generation %d, phase %q, updated %v; want 1, Running, not before %v",
			got.Generation, got.Status.Phase, got.UpdatedAt, created.UpdatedAt)
	}
	if diff := cmp.Diff(got, mustGetJob(t, s, "weekly")); diff != "" {
		t.Errorf("GetJob after update differs from UpdateJob's answer (-update +get):\n%s", diff)
	}
	got, err = s.UpdateJob(ctx, "weekly", func(j *serving.Job) error {
		j.Spec.ChunkRows = 500
		return nil
	})
	if err != nil || got.Generation != 2 || got.Status.RowsDone != 3000 {
		t.Errorf("after a spec update: generation %d, rows done %d, %v; want 2, 3000", got.Generation, got.Status.RowsDone, err)
	}
	if _, err := s.UpdateJob(ctx, "weekly", func(j *serving.Job) error { j.Name = "other"; return nil }); err == nil {
		t.Error("UpdateJob renaming the job succeeded; want an error")
	}
}

func testJobUpdateFnError(t *testing.T, s store.JobStore) {
	mustCreateJob(t, s, Job("weekly"))
	boom := errors.New("boom")
	_, err := s.UpdateJob(context.Background(), "weekly", func(j *serving.Job) error {
		j.Status.Phase = serving.JobFailed
		return boom
	})
	if err != boom {
		t.Errorf("UpdateJob = %v; want fn's error unwrapped", err)
	}
	if got := mustGetJob(t, s, "weekly"); got.Status.Phase != serving.JobPending {
		t.Errorf("phase after a failed update = %q; want it unchanged", got.Status.Phase)
	}
}

func testJobUpdateMissing(t *testing.T, s store.JobStore) {
	_, err := s.UpdateJob(context.Background(), "nope", func(*serving.Job) error { return nil })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateJob(missing) = %v; want ErrNotFound", err)
	}
}

// testJobUpdateConcurrent checks that updates serialize: none is lost.
func testJobUpdateConcurrent(t *testing.T, s store.JobStore) {
	mustCreateJob(t, s, Job("weekly"))
	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := s.UpdateJob(context.Background(), "weekly", func(j *serving.Job) error {
				j.Status.RowsDone++
				return nil
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := mustGetJob(t, s, "weekly"); got.Status.RowsDone != n {
		t.Errorf("rows done after %d concurrent increments = %d", n, got.Status.RowsDone)
	}
}

func testJobDelete(t *testing.T, s store.JobStore) {
	ctx := context.Background()
	mustCreateJob(t, s, Job("weekly"))
	mustCreateJob(t, s, Job("other"))
	for _, j := range []string{"weekly", "other"} {
		if err := s.PutJobChunk(ctx, store.JobChunk{Job: j, ID: "c-0", Rows: 10}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteJob(ctx, "weekly"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetJob(ctx, "weekly"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetJob after delete = %v; want ErrNotFound", err)
	}
	if cs, err := s.ListJobChunks(ctx, "weekly"); err != nil || len(cs) != 0 {
		t.Errorf("chunks after delete = %v, %v; want none", cs, err)
	}
	if cs, err := s.ListJobChunks(ctx, "other"); err != nil || len(cs) != 1 {
		t.Errorf("chunks of another job after delete = %v, %v; want its one", cs, err)
	}
	if err := s.DeleteJob(ctx, "weekly"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteJob twice = %v; want ErrNotFound", err)
	}
	// A job made again under the name starts without checkpoints.
	mustCreateJob(t, s, Job("weekly"))
	if cs, err := s.ListJobChunks(ctx, "weekly"); err != nil || len(cs) != 0 {
		t.Errorf("chunks of a job made again = %v, %v; want none", cs, err)
	}
}

func testJobChunks(t *testing.T, s store.JobStore) {
	ctx := context.Background()
	if err := s.PutJobChunk(ctx, store.JobChunk{Job: "nope", ID: "c-0"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutJobChunk(missing job) = %v; want ErrNotFound", err)
	}
	mustCreateJob(t, s, Job("weekly"))
	before := time.Now().Add(-time.Second)
	for _, i := range []int64{2, 0, 1} {
		c := store.JobChunk{Job: "weekly", ID: fmt.Sprintf("abc-%06d", i), Index: i, Rows: 1000, Skipped: i}
		if err := s.PutJobChunk(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// Again, with other numbers: the first record stands.
	if err := s.PutJobChunk(ctx, store.JobChunk{Job: "weekly", ID: "abc-000001", Index: 1, Rows: 5}); err != nil {
		t.Errorf("PutJobChunk of a recorded chunk = %v; want nil (idempotent)", err)
	}
	got, err := s.ListJobChunks(ctx, "weekly")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("ListJobChunks = %d chunks; want 3", len(got))
	}
	for i, c := range got {
		want := store.JobChunk{Job: "weekly", ID: fmt.Sprintf("abc-%06d", i), Index: int64(i), Rows: 1000, Skipped: int64(i), DoneAt: c.DoneAt}
		if diff := cmp.Diff(want, c); diff != "" {
			t.Errorf("chunk %d (-want +got):\n%s", i, diff)
		}
		if c.DoneAt.Before(before) || c.DoneAt.Location() != time.UTC {
			t.Errorf("chunk %d done at %v; want a recent UTC time", i, c.DoneAt)
		}
	}
	if cs, err := s.ListJobChunks(ctx, "nope"); err != nil || cs == nil || len(cs) != 0 {
		t.Errorf("ListJobChunks(missing) = %v, %v; want an empty slice", cs, err)
	}
}

// testJobChunksConcurrent records one chunk from several writers at once,
// as two runners of one job after a split brain would: one record.
func testJobChunksConcurrent(t *testing.T, s store.JobStore) {
	ctx := context.Background()
	mustCreateJob(t, s, Job("weekly"))
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- s.PutJobChunk(ctx, store.JobChunk{Job: "weekly", ID: "abc-000007", Index: 7, Rows: int64(100 + i)})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ListJobChunks(ctx, "weekly")
	if err != nil || len(got) != 1 {
		t.Fatalf("ListJobChunks after %d concurrent puts = %v, %v; want one chunk", n, got, err)
	}
}
