package queue_test

import (
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/queue"
)

// TestPendingCounts: a count is trusted for RecountAfter while it, with
// the enqueues since, is under half the bound; otherwise, and for a
// deployment never counted, Enqueue counts.
func TestPendingCounts(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	var c queue.PendingCounts
	const max = 10
	if !c.MustCount("iris", t0, max) {
		t.Fatal("a deployment never counted need not be counted")
	}
	c.Enqueued("iris", -1, t0) // not counted: remembers nothing
	if !c.MustCount("iris", t0, max) {
		t.Fatal("an enqueue without a count made a count")
	}
	c.Enqueued("iris", 2, t0) // 2 pending, then this one: 3
	for _, tc := range []struct {
		name string
		at   time.Time
		want bool
	}{
		{"just counted", t0.Add(time.Millisecond), false},
		{"a count a second old", t0.Add(queue.RecountAfter), true},
		{"the clock went back", t0.Add(-time.Millisecond), true},
	} {
		if got := c.MustCount("iris", tc.at, max); got != tc.want {
			t.Errorf("%s: MustCount = %v, want %v", tc.name, got, tc.want)
		}
	}
	c.Enqueued("iris", -1, t0) // 4
	if c.MustCount("iris", t0, max) {
		t.Error("4 of 10: MustCount = true, want false")
	}
	c.Enqueued("iris", -1, t0) // 5: half the bound
	if !c.MustCount("iris", t0, max) {
		t.Error("5 of 10: MustCount = false, want true")
	}
	if !c.MustCount("wine", t0, max) {
		t.Error("another deployment shares the count")
	}
}
