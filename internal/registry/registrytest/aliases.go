package registrytest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/store"
)

// Alias and serving-history cases of the suite.

func testAlias(t *testing.T, s registry.Store) {
	mustModel(t, s, "a")
	for range 3 {
		mustVersion(t, s, "a")
	}
	move, err := s.SetAlias(ctx, "a", "champion", 1, 0, "alice")
	if err != nil {
		t.Fatalf("SetAlias create: %v", err)
	}
	if move.Model != "a" || move.Alias != "champion" || move.From != 0 || move.To != 1 || move.By != "alice" || move.At.IsZero() {
		t.Errorf("creating move = %+v", move)
	}
	al, err := s.GetAlias(ctx, "a", "champion")
	if err != nil {
		t.Fatalf("GetAlias: %v", err)
	}
	want := registry.Alias{Model: "a", Name: "champion", Version: 1, UpdatedAt: move.At, UpdatedBy: "alice"}
	if diff := cmp.Diff(want, al, sameTime); diff != "" {
		t.Errorf("GetAlias (-want +got):\n%s", diff)
	}
	m2, err := s.SetAlias(ctx, "a", "champion", 2, 1, "bob")
	if err != nil {
		t.Fatalf("SetAlias 1->2: %v", err)
	}
	m3, err := s.SetAlias(ctx, "a", "champion", 3, registry.AnyVersion, "carol")
	if err != nil {
		t.Fatalf("SetAlias any->3: %v", err)
	}
	// A move to the current version writes nothing.
	same, err := s.SetAlias(ctx, "a", "champion", 3, 3, "dave")
	if err != nil {
		t.Fatalf("SetAlias 3->3: %v", err)
	}
	if same.From != 3 || same.To != 3 {
		t.Errorf("no-op move = %+v, want From 3 To 3", same)
	}
	if _, err := s.SetAlias(ctx, "a", "challenger", 2, 0, "erin"); err != nil {
		t.Fatalf("SetAlias challenger: %v", err)
	}
	hist, err := s.AliasHistory(ctx, "a", "champion")
	if err != nil {
		t.Fatalf("AliasHistory: %v", err)
	}
	wantHist := []registry.AliasMove{move, m2, m3}
	if diff := cmp.Diff(wantHist, hist, sameTime); diff != "" {
		t.Errorf("AliasHistory (-want +got):\n%s", diff)
	}
	for i := 1; i < len(hist); i++ {
		if hist[i].At.Before(hist[i-1].At) {
			t.Errorf("history times go back: %v then %v", hist[i-1].At, hist[i].At)
		}
	}
	aliases, err := s.ListAliases(ctx, "a")
	if err != nil {
		t.Fatalf("ListAliases: %v", err)
	}
	got := []string{}
	for _, a := range aliases {
		got = append(got, fmt.Sprintf("%s=%d by %s", a.Name, a.Version, a.UpdatedBy))
	}
	if diff := cmp.Diff([]string{"challenger=2 by erin", "champion=3 by carol"}, got); diff != "" {
		t.Errorf("ListAliases (-want +got):\n%s", diff)
	}
	if h, err := s.AliasHistory(ctx, "a", "none"); err != nil || len(h) != 0 {
		t.Errorf("AliasHistory of an unknown alias = %v, %v; want empty, nil", h, err)
	}
	if l, err := s.ListAliases(ctx, "zz"); err != nil || len(l) != 0 {
		t.Errorf("ListAliases of an unknown model = %v, %v; want empty, nil", l, err)
	}
}

func testAliasErrors(t *testing.T, s registry.Store) {
	mustModel(t, s, "a")
	mustVersion(t, s, "a")
	mustVersion(t, s, "a")
	_, err := s.SetAlias(ctx, "missing", "x", 1, registry.AnyVersion, "")
	wantErr(t, "SetAlias on a missing model", err, store.ErrNotFound)
	_, err = s.SetAlias(ctx, "a", "x", 3, registry.AnyVersion, "")
	wantErr(t, "SetAlias to a missing version", err, store.ErrNotFound)
	_, err = s.GetAlias(ctx, "a", "x")
	wantErr(t, "GetAlias of a missing alias", err, store.ErrNotFound)
	_, err = s.SetAlias(ctx, "a", "x", 1, 2, "")
	wantErr(t, "SetAlias expecting version 2 of a missing alias", err, store.ErrConflict)
	if _, err := s.SetAlias(ctx, "a", "x", 1, 0, ""); err != nil {
		t.Fatalf("SetAlias: %v", err)
	}
	_, err = s.SetAlias(ctx, "a", "x", 2, 0, "")
	wantErr(t, "SetAlias expecting no alias", err, store.ErrConflict)
	_, err = s.SetAlias(ctx, "a", "x", 2, 2, "")
	wantErr(t, "SetAlias expecting the wrong version", err, store.ErrConflict)
	al, err := s.GetAlias(ctx, "a", "x")
	if err != nil || al.Version != 1 {
		t.Errorf("after conflicts GetAlias = %+v, %v; want version 1", al, err)
	}
	if h, _ := s.AliasHistory(ctx, "a", "x"); len(h) != 1 {
		t.Errorf("conflicts were recorded in the history: %+v", h)
	}
}

func testAliasConcurrent(t *testing.T, s registry.Store) {
	mustModel(t, s, "a")
	const n = 8
	for range n + 1 {
		mustVersion(t, s, "a")
	}
	if _, err := s.SetAlias(ctx, "a", "champion", 1, 0, "setup"); err != nil {
		t.Fatalf("SetAlias: %v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.SetAlias(ctx, "a", "champion", i+2, 1, fmt.Sprintf("mover-%d", i))
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("movers %d and %d both won the move from version 1", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("mover %d: got %v, want success or an error wrapping store.ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no concurrent move won")
	}
	al, err := s.GetAlias(ctx, "a", "champion")
	if err != nil {
		t.Fatalf("GetAlias: %v", err)
	}
	if al.Version != winner+2 || al.UpdatedBy != fmt.Sprintf("mover-%d", winner) {
		t.Errorf("alias = %+v, want the winner's version %d", al, winner+2)
	}
	hist, err := s.AliasHistory(ctx, "a", "champion")
	if err != nil {
		t.Fatalf("AliasHistory: %v", err)
	}
	if len(hist) != 2 || hist[1].From != 1 || hist[1].To != winner+2 {
		t.Errorf("history = %+v, want the creation and the winner's move only", hist)
	}
}

func testAliasDelete(t *testing.T, s registry.Store) {
	mustModel(t, s, "a")
	mustVersion(t, s, "a")
	mustVersion(t, s, "a")
	if _, err := s.SetAlias(ctx, "a", "x", 2, 0, "alice"); err != nil {
		t.Fatalf("SetAlias: %v", err)
	}
	_, err := s.DeleteAlias(ctx, "a", "x", 1, "bob")
	wantErr(t, "DeleteAlias expecting the wrong version", err, store.ErrConflict)
	move, err := s.DeleteAlias(ctx, "a", "x", 2, "bob")
	if err != nil {
		t.Fatalf("DeleteAlias: %v", err)
	}
	if move.From != 2 || move.To != 0 || move.By != "bob" {
		t.Errorf("delete move = %+v, want From 2 To 0 By bob", move)
	}
	_, err = s.GetAlias(ctx, "a", "x")
	wantErr(t, "GetAlias after DeleteAlias", err, store.ErrNotFound)
	_, err = s.DeleteAlias(ctx, "a", "x", registry.AnyVersion, "bob")
	wantErr(t, "DeleteAlias of a deleted alias", err, store.ErrNotFound)
	hist, err := s.AliasHistory(ctx, "a", "x")
	if err != nil {
		t.Fatalf("AliasHistory: %v", err)
	}
	var got []string
	for _, h := range hist {
		got = append(got, fmt.Sprintf("%d->%d by %s", h.From, h.To, h.By))
	}
	if diff := cmp.Diff([]string{"0->2 by alice", "2->0 by bob"}, got); diff != "" {
		t.Errorf("history after delete (-want +got):\n%s", diff)
	}
	// The alias can be created again.
	if _, err := s.SetAlias(ctx, "a", "x", 1, 0, "carol"); err != nil {
		t.Errorf("SetAlias after delete: %v", err)
	}
}

func rec(deployment, model string, version int, at time.Time) registry.ServingRecord {
	return registry.ServingRecord{Deployment: deployment, Model: model, Version: version, At: at}
}

func testServingHistory(t *testing.T, s registry.Store) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	records := []registry.ServingRecord{
		rec("web", "diabetes", 1, t0),
		rec("web", "diabetes", 1, t0.Add(time.Minute)), // same version again: not repeated
		rec("batch", "diabetes", 1, t0.Add(2*time.Minute)),
		rec("web", "diabetes", 2, t0.Add(3*time.Minute)),
		rec("web", "diabetes", 1, t0.Add(4*time.Minute)), // rolled back
		rec("web", "other", 1, t0.Add(5*time.Minute)),
	}
	for _, r := range records {
		if err := s.RecordServing(ctx, r.Deployment, r.Model, r.Version, r.At); err != nil {
			t.Fatalf("RecordServing(%+v): %v", r, err)
		}
	}
	got, err := s.ServingHistory(ctx, "web")
	if err != nil {
		t.Fatalf("ServingHistory: %v", err)
	}
	want := []registry.ServingRecord{records[0], records[3], records[4], records[5]}
	if diff := cmp.Diff(want, got, sameTime); diff != "" {
		t.Errorf("ServingHistory(web) (-want +got):\n%s", diff)
	}
	if got, err := s.ServingHistory(ctx, "none"); err != nil || len(got) != 0 {
		t.Errorf("ServingHistory(none) = %v, %v; want empty, nil", got, err)
	}
}

func testLastServedAll(t *testing.T, s registry.Store) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	served := []struct {
		deployment, model string
		version           int
	}{
		{"web", "diabetes", 1}, {"web", "diabetes", 2}, {"batch", "diabetes", 5},
		{"web", "diabetes", 1}, {"web", "other", 1}, {"web", "diabetes", 3}, {"web", "diabetes", 1},
	}
	for i, r := range served {
		if err := s.RecordServing(ctx, r.deployment, r.model, r.version, t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatalf("RecordServing(%+v): %v", r, err)
		}
	}
	tests := []struct {
		deployment string
		n          int
		want       []registry.ServingRecord
	}{
		// diabetes:1 served three times; only its latest record counts.
		{"web", 3, []registry.ServingRecord{rec("web", "diabetes", 1, t0.Add(6*time.Minute)),
			rec("web", "diabetes", 3, t0.Add(5*time.Minute)), rec("web", "other", 1, t0.Add(4*time.Minute))}},
		{"web", 1, []registry.ServingRecord{rec("web", "diabetes", 1, t0.Add(6*time.Minute))}},
		{"web", 10, []registry.ServingRecord{rec("web", "diabetes", 1, t0.Add(6*time.Minute)),
			rec("web", "diabetes", 3, t0.Add(5*time.Minute)), rec("web", "other", 1, t0.Add(4*time.Minute)),
			rec("web", "diabetes", 2, t0.Add(time.Minute))}},
		{"batch", 3, []registry.ServingRecord{rec("batch", "diabetes", 5, t0.Add(2*time.Minute))}},
		{"none", 3, []registry.ServingRecord{}},
		{"web", 0, []registry.ServingRecord{}},
	}
	for _, tt := range tests {
		all, err := s.LastServedAll(ctx, tt.n)
		if err != nil {
			t.Fatalf("LastServedAll(%d): %v", tt.n, err)
		}
		got := all[tt.deployment]
		if got == nil {
			got = []registry.ServingRecord{}
		}
		if diff := cmp.Diff(tt.want, got, sameTime); diff != "" {
			t.Errorf("LastServedAll(%d)[%s] (-want +got):\n%s", tt.n, tt.deployment, diff)
		}
		// Only deployments with records are there.
		for dep, recs := range all {
			if len(recs) == 0 || (dep != "web" && dep != "batch") {
				t.Errorf("LastServedAll(%d)[%s] = %v, want no entry", tt.n, dep, recs)
			}
		}
	}
}
