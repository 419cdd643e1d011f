// Package registrytest is the conformance suite every registry.Store
// implementation passes: call Run from the implementation's tests with a
// function that opens a fresh, empty store.
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/store"
)

// Run runs the conformance suite. open must return a new, empty store for
// each call and arrange (with t.Cleanup) for it to be closed.
func Run(t *testing.T, open func(t *testing.T) registry.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s registry.Store)
	}{
		{"ModelCreateGet", testModelCreateGet},
		{"ModelErrors", testModelErrors},
		{"ModelList", testModelList},
		{"VersionCreateGet", testVersionCreateGet},
		{"VersionErrors", testVersionErrors},
		{"VersionNumbersConcurrent", testVersionNumbersConcurrent},
		{"VersionList", testVersionList},
		{"VersionState", testVersionState},
		{"VersionTouch", testVersionTouch},
		{"VersionTags", testVersionTags},
		{"Alias", testAlias},
		{"AliasErrors", testAliasErrors},
		{"AliasConcurrent", testAliasConcurrent},
		{"AliasDelete", testAliasDelete},
		{"ServingHistory", testServingHistory},
		{"LastServedAll", testLastServedAll},
		{"ResolveRefs", testResolveRefs},
		{"ModelDelete", testModelDelete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, open(t))
		})
	}
}

var ctx = context.Background()

// sameTime compares times by instant, so UTC and local forms of one instant
// are equal.
var sameTime = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

func mustModel(t *testing.T, s registry.Store, name string) registry.Model {
	t.Helper()
	m, err := s.CreateModel(ctx, registry.Model{Name: name, Description: "model " + name})
	if err != nil {
		t.Fatalf("CreateModel(%q): %v", name, err)
	}
	return m
}

func sampleVersion(model string) registry.Version {
	return registry.Version{
		Model:       model,
		ArtifactURI: "file:///artifacts/sha256/ab/abcdef",
		SHA256:      "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
		Size:        1234,
		Packaging:   registry.PackagingTar,
		Entry:       "model.json",
		Engine:      "trees",
		Signature: registry.Signature{
			Inputs:  []oip.TensorMetadata{{Name: "input", Datatype: "FP32", Shape: []int64{-1, 10}}},
			Outputs: []oip.TensorMetadata{{Name: "predict", Datatype: "FP32", Shape: []int64{-1}}},
		},
		Lineage: registry.Lineage{
			DataURI:    "s3://data/diabetes.csv",
			DataSHA256: "0011",
			Parameters: map[string]string{"max_depth": "4", "eta": "0.1"},
			Metrics:    map[string]float64{"rmse": 54.25, "r2": 0.41},
			CodeCommit: "deadbeef",
			Source:     "mlflow run 42",
		},
		Tags:      map[string]string{"team": "health"},
		CreatedBy: "alice",
	}
}

func mustVersion(t *testing.T, s registry.Store, model string) registry.Version {
	t.Helper()
	v, err := s.CreateVersion(ctx, sampleVersion(model))
	if err != nil {
		t.Fatalf("CreateVersion(%q): %v", model, err)
	}
	return v
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %v, want one wrapping %v", what, err, want)
	}
}

func testModelCreateGet(t *testing.T, s registry.Store) {
	before := time.Now().Add(-time.Minute)
	m, err := s.CreateModel(ctx, registry.Model{Name: "diabetes", Description: "regression", LatestVersion: 7})
	if err != nil {
		t.Fatalf("CreateModel: %v", err)
	}
	if m.Name != "diabetes" || m.Description != "regression" || m.LatestVersion != 0 {
		t.Errorf("CreateModel returned %+v, want name, description and LatestVersion 0", m)
	}
	if m.CreatedAt.Before(before) || !m.UpdatedAt.Equal(m.CreatedAt) {
		t.Errorf("CreateModel times: created %v updated %v; want now and equal", m.CreatedAt, m.UpdatedAt)
	}
	got, err := s.GetModel(ctx, "diabetes")
	if err != nil {
		t.Fatalf("GetModel: %v", err)
	}
	if diff := cmp.Diff(m, got, sameTime); diff != "" {
		t.Errorf("GetModel (-created +got):\n%s", diff)
	}
}

func testModelErrors(t *testing.T, s registry.Store) {
	mustModel(t, s, "a")
	_, err := s.CreateModel(ctx, registry.Model{Name: "a"})
	wantErr(t, "CreateModel of a taken name", err, store.ErrExists)
	_, err = s.GetModel(ctx, "missing")
	wantErr(t, "GetModel of a missing model", err, store.ErrNotFound)
}

func testModelList(t *testing.T, s registry.Store) {
	var names []string
	for i := range 25 {
		names = append(names, fmt.Sprintf("m-%02d", i))
	}
	names = append(names, "other", "n-1")
	for _, n := range []int{5, 0, 20, 13} { // out of order on purpose
		mustModel(t, s, names[n])
	}
	for i, n := range names {
		if i != 5 && i != 0 && i != 20 && i != 13 {
			mustModel(t, s, n)
		}
	}
	all := append([]string(nil), names...)
	sort.Strings(all)

	list := func(opts registry.ListOptions) []string {
		t.Helper()
		ms, err := s.ListModels(ctx, opts)
		if err != nil {
			t.Fatalf("ListModels(%+v): %v", opts, err)
		}
		out := []string{}
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return out
	}
	if diff := cmp.Diff(all, list(registry.ListOptions{})); diff != "" {
		t.Errorf("ListModels() (-want +got):\n%s", diff)
	}
	// Page through the "m-" models ten at a time.
	var paged []string
	after := ""
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("paging did not end")
		}
		got := list(registry.ListOptions{Prefix: "m-", After: after, Limit: 10})
		paged = append(paged, got...)
		if len(got) < 10 {
			break
		}
		after = got[len(got)-1]
	}
	if diff := cmp.Diff(names[:25], paged); diff != "" {
		t.Errorf("paged ListModels(prefix m-) (-want +got):\n%s", diff)
	}
	if got := list(registry.ListOptions{Prefix: "zz"}); len(got) != 0 {
		t.Errorf("ListModels(prefix zz) = %v, want none", got)
	}
	// A prefix with LIKE wildcards must match literally.
	if got := list(registry.ListOptions{Prefix: "m_"}); len(got) != 0 {
		t.Errorf("ListModels(prefix m_) = %v, want none", got)
	}
	if got := list(registry.ListOptions{Prefix: "%"}); len(got) != 0 {
		t.Errorf("ListModels(prefix %%) = %v, want none", got)
	}
	if diff := cmp.Diff([]string{"n-1", "other"}, list(registry.ListOptions{After: "m-24"})); diff != "" {
		t.Errorf("ListModels(after m-24) (-want +got):\n%s", diff)
	}
}

func testVersionCreateGet(t *testing.T, s registry.Store) {
	m := mustModel(t, s, "diabetes")
	in := sampleVersion("diabetes")
	in.Version = 99
	in.State = registry.StateRetired
	in.LastUsedAt = time.Now()
	v, err := s.CreateVersion(ctx, in)
	if err != nil {
		t.Fatalf("CreateVersion: %v", err)
	}
	want := sampleVersion("diabetes")
	want.Version = 1
	want.State = registry.StateActive
	want.CreatedAt = v.CreatedAt
	want.StateChangedAt = v.CreatedAt
	if diff := cmp.Diff(want, v, sameTime); diff != "" {
		t.Errorf("CreateVersion (-want +got):\n%s", diff)
	}
	if v.CreatedAt.Before(m.CreatedAt) {
		t.Errorf("version CreatedAt %v is before the model's %v", v.CreatedAt, m.CreatedAt)
	}
	got, err := s.GetVersion(ctx, "diabetes", 1)
	if err != nil {
		t.Fatalf("GetVersion: %v", err)
	}
	if diff := cmp.Diff(want, got, sameTime); diff != "" {
		t.Errorf("GetVersion (-want +got):\n%s", diff)
	}
	v2, err := s.CreateVersion(ctx, registry.Version{Model: "diabetes", ArtifactURI: "file:///x", SHA256: "00", Engine: "onnx"})
	if err != nil {
		t.Fatalf("second CreateVersion: %v", err)
	}
	if v2.Version != 2 {
		t.Errorf("second version is number %d, want 2", v2.Version)
	}
	// Empty maps and signatures come back empty (nil or zero-length).
	got2, err := s.GetVersion(ctx, "diabetes", 2)
	if err != nil {
		t.Fatalf("GetVersion(2): %v", err)
	}
	if diff := cmp.Diff(v2, got2, sameTime, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("GetVersion(2) (-created +got):\n%s", diff)
	}
	m2, err := s.GetModel(ctx, "diabetes")
	if err != nil {
		t.Fatalf("GetModel: %v", err)
	}
	if m2.LatestVersion != 2 || !m2.UpdatedAt.Equal(v2.CreatedAt) || !m2.CreatedAt.Equal(m.CreatedAt) {
		t.Errorf("model after two versions = %+v; want LatestVersion 2, UpdatedAt %v, CreatedAt %v", m2, v2.CreatedAt, m.CreatedAt)
	}
}

func testVersionErrors(t *testing.T, s registry.Store) {
	_, err := s.CreateVersion(ctx, sampleVersion("missing"))
	wantErr(t, "CreateVersion of a missing model", err, store.ErrNotFound)
	mustModel(t, s, "a")
	mustVersion(t, s, "a")
	_, err = s.GetVersion(ctx, "a", 2)
	wantErr(t, "GetVersion of a missing version", err, store.ErrNotFound)
	_, err = s.GetVersion(ctx, "missing", 1)
	wantErr(t, "GetVersion of a missing model", err, store.ErrNotFound)
	_, err = s.ListVersions(ctx, "missing", registry.VersionListOptions{})
	wantErr(t, "ListVersions of a missing model", err, store.ErrNotFound)
	_, err = s.SetVersionState(ctx, "a", 2, registry.StateActive, registry.StateWarned, time.Now())
	wantErr(t, "SetVersionState of a missing version", err, store.ErrNotFound)
	err = s.TouchVersion(ctx, "a", 2, time.Now())
	wantErr(t, "TouchVersion of a missing version", err, store.ErrNotFound)
	_, err = s.UpdateVersionTags(ctx, "a", 2, map[string]string{"k": "v"}, nil)
	wantErr(t, "UpdateVersionTags of a missing version", err, store.ErrNotFound)
}

func testVersionNumbersConcurrent(t *testing.T, s registry.Store) {
	mustModel(t, s, "a")
	const n = 8
	var wg sync.WaitGroup
	nums := make([]int, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			v, err := s.CreateVersion(ctx, sampleVersion("a"))
			nums[i], errs[i] = v.Version, err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent CreateVersion %d: %v", i, err)
		}
	}
	sort.Ints(nums)
	if diff := cmp.Diff([]int{1, 2, 3, 4, 5, 6, 7, 8}, nums); diff != "" {
		t.Errorf("concurrent version numbers (-want +got):\n%s", diff)
	}
	m, err := s.GetModel(ctx, "a")
	if err != nil {
		t.Fatalf("GetModel: %v", err)
	}
	if m.LatestVersion != n {
		t.Errorf("LatestVersion = %d, want %d", m.LatestVersion, n)
	}
}

func testVersionList(t *testing.T, s registry.Store) {
	mustModel(t, s, "a")
	mustModel(t, s, "b")
	for range 5 {
		mustVersion(t, s, "a")
	}
	mustVersion(t, s, "b")
	list := func(model string, opts registry.VersionListOptions) []int {
		t.Helper()
		vs, err := s.ListVersions(ctx, model, opts)
		if err != nil {
			t.Fatalf("ListVersions(%q, %+v): %v", model, opts, err)
		}
		out := []int{}
		for _, v := range vs {
			if v.Model != model {
				t.Errorf("ListVersions(%q) returned a version of %q", model, v.Model)
			}
			out = append(out, v.Version)
		}
		return out
	}
	tests := []struct {
		model string
		opts  registry.VersionListOptions
		want  []int
	}{
		{"a", registry.VersionListOptions{}, []int{1, 2, 3, 4, 5}},
		{"a", registry.VersionListOptions{Limit: 2}, []int{1, 2}},
		{"a", registry.VersionListOptions{After: 2, Limit: 2}, []int{3, 4}},
		{"a", registry.VersionListOptions{After: 4}, []int{5}},
		{"a", registry.VersionListOptions{After: 5}, []int{}},
		{"b", registry.VersionListOptions{}, []int{1}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, list(tt.model, tt.opts)); diff != "" {
			t.Errorf("ListVersions(%q, %+v) (-want +got):\n%s", tt.model, tt.opts, diff)
		}
	}
	mustModel(t, s, "empty")
	if got := list("empty", registry.VersionListOptions{}); len(got) != 0 {
		t.Errorf("ListVersions(empty) = %v, want none", got)
	}
}

func testVersionState(t *testing.T, s registry.Store) {
	mustModel(t, s, "a")
	v := mustVersion(t, s, "a")
	at := time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)
	got, err := s.SetVersionState(ctx, "a", 1, registry.StateActive, registry.StateWarned, at)
	if err != nil {
		t.Fatalf("SetVersionState: %v", err)
	}
	want := v
	want.State = registry.StateWarned
	want.StateChangedAt = at
	if diff := cmp.Diff(want, got, sameTime); diff != "" {
		t.Errorf("SetVersionState (-want +got):\n%s", diff)
	}
	// A stale `from` is a conflict and changes nothing.
	_, err = s.SetVersionState(ctx, "a", 1, registry.StateActive, registry.StateRetired, at.Add(time.Hour))
	wantErr(t, "SetVersionState from a stale state", err, store.ErrConflict)
	read, err := s.GetVersion(ctx, "a", 1)
	if err != nil {
		t.Fatalf("GetVersion: %v", err)
	}
	if diff := cmp.Diff(want, read, sameTime); diff != "" {
		t.Errorf("version after a conflicting state change (-want +got):\n%s", diff)
	}
}

func testVersionTouch(t *testing.T, s registry.Store) {
	mustModel(t, s, "a")
	mustVersion(t, s, "a")
	t1 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, at := range []time.Time{t1, t1.Add(time.Hour), t1.Add(30 * time.Minute)} {
		if err := s.TouchVersion(ctx, "a", 1, at); err != nil {
			t.Fatalf("TouchVersion(%v): %v", at, err)
		}
	}
	v, err := s.GetVersion(ctx, "a", 1)
	if err != nil {
		t.Fatalf("GetVersion: %v", err)
	}
	if want := t1.Add(time.Hour); !v.LastUsedAt.Equal(want) {
		t.Errorf("LastUsedAt = %v, want the latest touch %v (an earlier touch must not move it back)", v.LastUsedAt, want)
	}
}

func testVersionTags(t *testing.T, s registry.Store) {
	mustModel(t, s, "a")
	mustVersion(t, s, "a") // tags {team: health}
	got, err := s.UpdateVersionTags(ctx, "a", 1, map[string]string{"stage": "prod", "team": "ml"}, nil)
	if err != nil {
		t.Fatalf("UpdateVersionTags: %v", err)
	}
	if diff := cmp.Diff(map[string]string{"stage": "prod", "team": "ml"}, got.Tags); diff != "" {
		t.Errorf("tags after set (-want +got):\n%s", diff)
	}
	got, err = s.UpdateVersionTags(ctx, "a", 1, nil, []string{"team", "absent"})
	if err != nil {
		t.Fatalf("UpdateVersionTags(del): %v", err)
	}
	read, err := s.GetVersion(ctx, "a", 1)
	if err != nil {
		t.Fatalf("GetVersion: %v", err)
	}
	for _, v := range []registry.Version{got, read} {
		if diff := cmp.Diff(map[string]string{"stage": "prod"}, v.Tags); diff != "" {
			t.Errorf("tags after delete (-want +got):\n%s", diff)
		}
	}
	// Concurrent updates of different keys all land.
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			if _, err := s.UpdateVersionTags(ctx, "a", 1, map[string]string{fmt.Sprintf("k%d", i): "v"}, nil); err != nil {
				t.Errorf("concurrent UpdateVersionTags: %v", err)
			}
		})
	}
	wg.Wait()
	read, err = s.GetVersion(ctx, "a", 1)
	if err != nil {
		t.Fatalf("GetVersion: %v", err)
	}
	if len(read.Tags) != 7 {
		t.Errorf("after 6 concurrent tag updates the tags are %v, want 7 keys", read.Tags)
	}
}
