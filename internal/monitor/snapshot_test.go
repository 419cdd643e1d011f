package monitor

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	clocktesting "k8s.io/utils/clock/testing"
)

// Two windows' snapshots merged into a third report what one window that
// saw every row reports, also after a round trip through JSON.
func TestSnapshotMerge(t *testing.T) {
	specs := []Spec{{Name: "x", Kind: Numeric}, {Name: "c", Kind: Categorical}}
	rng := rand.New(rand.NewPCG(3, 4))
	row := func(shift float64) Row {
		c := "a"
		if rng.Float64() < 0.4 {
			c = "b"
		}
		return Row{Num: []float64{shift + rng.NormFloat64()}, Cat: []string{c}}
	}
	ref := make([]Row, 2000)
	for i := range ref {
		ref[i] = row(0)
	}
	p, err := BuildProfile(specs, ref, ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(start)
	opts := WindowOptions{SubWindow: time.Minute, SubWindows: 3, Clock: clk}
	a, b, all := NewWindow(p, opts), NewWindow(p, opts), NewWindow(p, opts)
	observe := func(w *Window, n int, shift float64) {
		for range n {
			r := row(shift)
			if err := w.Observe(r); err != nil {
				t.Fatal(err)
			}
			if err := all.Observe(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	observe(a, 300, 0)
	observe(b, 100, 0.5)
	clk.SetTime(start.Add(time.Minute))
	observe(a, 50, 0.5)
	observe(b, 200, 1)
	merged := NewWindow(p, opts)
	for _, w := range []*Window{a, b} {
		s := w.Snapshot()
		if len(s.Blocks) != 2 {
			t.Fatalf("snapshot has %d blocks; want 2", len(s.Blocks))
		}
		data, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back Snapshot
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		if err := merged.Merge(back); err != nil {
			t.Fatal(err)
		}
	}
	// Sums are added in another order: equal to rounding.
	approx := cmpopts.EquateApprox(0, 1e-12)
	if diff := cmp.Diff(all.Report(), merged.Report(), approx); diff != "" {
		t.Errorf("merged report (-one window +merged):\n%s", diff)
	}
	if got := merged.Report().Rows; got != 650 {
		t.Errorf("rows = %d; want 650", got)
	}

	// Blocks that fell out of the window are left out.
	clk.SetTime(start.Add(3 * time.Minute))
	late := NewWindow(p, opts)
	if err := late.Merge(a.Snapshot()); err != nil {
		t.Fatal(err)
	}
	s := a.Snapshot()
	if len(s.Blocks) != 1 || s.Rows() != 50 {
		t.Errorf("snapshot after 3 minutes: %d blocks, %d rows; want 1 block of 50", len(s.Blocks), s.Rows())
	}
	if got := late.Report().Rows; got != 50 {
		t.Errorf("rows merged after 3 minutes = %d; want 50", got)
	}
}

func TestMergeRefusesAnotherShape(t *testing.T) {
	p1, err := BuildProfile([]Spec{{Name: "x", Kind: Numeric}}, sampleNum(1000, normal(0, 1), 1), ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := BuildProfile([]Spec{{Name: "x", Kind: Numeric}}, sampleNum(1000, normal(0, 1), 1), ProfileOptions{Bins: 5})
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakePassiveClock(time.Unix(1e9, 0))
	src := NewWindow(p1, WindowOptions{Clock: clk})
	if err := src.Observe(Row{Num: []float64{0}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dst  *Window
	}{
		{"other bins", NewWindow(p2, WindowOptions{Clock: clk})},
		{"other sub-window", NewWindow(p1, WindowOptions{Clock: clk, SubWindow: time.Minute})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.dst.Merge(src.Snapshot()); !errors.Is(err, ErrSnapshotShape) {
				t.Errorf("Merge = %v; want ErrSnapshotShape", err)
			}
			if got := tt.dst.Report().Rows; got != 0 {
				t.Errorf("rows after a refused merge = %d; want 0", got)
			}
		})
	}
}
