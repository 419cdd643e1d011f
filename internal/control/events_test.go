package control

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/serving"
)

func TestEventLogBounded(t *testing.T) {
	var l eventLog
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range maxEvents + 50 {
		l.record("d", serving.Event{Time: t0.Add(time.Duration(i) * time.Second), Type: serving.EventNormal,
			Reason: serving.ReasonScaledUp, Message: fmt.Sprintf("event %d", i)})
	}
	got := l.list("d")
	if len(got) != maxEvents {
		t.Fatalf("kept %d events, want %d", len(got), maxEvents)
	}
	for i, ev := range got {
		if want := fmt.Sprintf("event %d", i+50); ev.Message != want {
			t.Fatalf("event %d is %q, want %q (oldest first, the first 50 dropped)", i, ev.Message, want)
		}
	}
	if n := len(l.list("other")); n != 0 {
		t.Errorf("another deployment has %d events", n)
	}
	l.forget("d")
	if n := len(l.list("d")); n != 0 {
		t.Errorf("forgotten deployment has %d events", n)
	}
}

func TestEventLogFoldsRepeats(t *testing.T) {
	var l eventLog
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fail := func(at time.Duration) serving.Event {
		return serving.Event{Time: t0.Add(at), Type: serving.EventWarning, Reason: serving.ReasonReplicaFailed, Message: "model does not load"}
	}
	var sunk []serving.Event
	l.sink = func(_ string, ev serving.Event) { sunk = append(sunk, ev) }
	l.record("d", fail(0))
	l.record("d", fail(time.Second))
	l.record("d", fail(2*time.Second))
	l.record("d", serving.Event{Time: t0.Add(3 * time.Second), Type: serving.EventNormal, Reason: serving.ReasonReplicaReady, Message: "ready"})
	l.record("d", fail(4*time.Second))
	want := []serving.Event{
		{Time: t0.Add(2 * time.Second), Type: serving.EventWarning, Reason: serving.ReasonReplicaFailed, Message: "model does not load", Count: 3},
		{Time: t0.Add(3 * time.Second), Type: serving.EventNormal, Reason: serving.ReasonReplicaReady, Message: "ready"},
		fail(4 * time.Second),
	}
	if diff := cmp.Diff(want, l.list("d")); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if len(sunk) != 5 || sunk[2].Count != 3 {
		t.Errorf("sink got %+v; want every record, the third with count 3", sunk)
	}
}

// reasons returns the reasons of a deployment's events, in order.
func reasons(evs []serving.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Reason)
	}
	return out
}

// waitEvents waits until the deployment's events contain every reason in
// want, in that order, and returns them.
func (f *fixture) waitEvents(name string, want ...string) []serving.Event {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, _ := f.ctl.Events(context.Background(), name)
		if hasInOrder(reasons(evs), want) {
			return evs
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: events %v do not contain %v in order", name, reasons(evs), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func hasInOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func find(evs []serving.Event, reason string) serving.Event {
	for _, ev := range evs {
		if ev.Reason == reason {
			return ev
		}
	}
	return serving.Event{}
}

func TestEventsOfALifecycle(t *testing.T) {
	f := newFixture(t, dep("m", serving.Scaling{MinReplicas: 1, MaxReplicas: 1}))
	var mu sync.Mutex
	var sunk []string
	f.ctl.OnEvent(func(d string, ev serving.Event) {
		mu.Lock()
		defer mu.Unlock()
		sunk = append(sunk, d+"/"+ev.Reason)
	})
	st := f.tickUntil("m", "1 ready", ready(1))
	id := st.ReplicaStatuses[0].ID
	evs := f.waitEvents("m", serving.ReasonScaledUp, serving.ReasonReplicaStarted, serving.ReasonReplicaReady)
	if ev := find(evs, serving.ReasonScaledUp); ev.Type != serving.EventNormal || !strings.HasPrefix(ev.Message, "desired replicas 0 → 1: ") {
		t.Errorf("scale event = %+v; want Normal, \"desired replicas 0 → 1: <the autoscaler's reason>\"", ev)
	}
	if ev := find(evs, serving.ReasonReplicaReady); !strings.Contains(ev.Message, id) || !strings.Contains(ev.Message, "cold start") {
		t.Errorf("ready event = %+v; want the replica's ID and its cold start", ev)
	}
	for i, ev := range evs {
		if ev.Time.Location() != time.UTC || ev.Time.After(f.clock.Now()) || (i > 0 && ev.Time.Before(evs[i-1].Time)) {
			t.Errorf("event %d at %v; want UTC times from the loop's clock (now %v), in order", i, ev.Time, f.clock.Now())
		}
	}

	// A crash right after ready: exited, then failed with the backoff.
	f.backend.crash(id)
	evs = f.waitEvents("m", serving.ReasonReplicaReady, serving.ReasonReplicaExited, serving.ReasonReplicaFailed)
	if ev := find(evs, serving.ReasonReplicaExited); ev.Type != serving.EventWarning || !strings.Contains(ev.Message, "signal: killed") {
		t.Errorf("exit event = %+v; want a Warning with the exit's error", ev)
	}
	if ev := find(evs, serving.ReasonReplicaFailed); ev.Type != serving.EventWarning || !strings.Contains(ev.Message, "next start in 1s") {
		t.Errorf("failure event = %+v; want a Warning with the backoff", ev)
	}
	f.tickUntil("m", "replacement ready", ready(1))

	// A new model rolls the replicas.
	if _, err := f.store.UpdateDeployment(context.Background(), "m", func(d *serving.Deployment) error {
		d.Spec.Model = "/models/m-v2.json"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f.ctl.Notify("m")
	f.waitEvents("m", serving.ReasonReplicaFailed, serving.ReasonRolled, serving.ReasonReplicaReady, serving.ReasonReplicaStopping)

	mu.Lock()
	n := len(sunk)
	mu.Unlock()
	if n == 0 || !strings.HasPrefix(sunk[0], "m/") {
		t.Errorf("OnEvent got %v; want every event of m", sunk)
	}

	// Deleted: its events go with it.
	if err := f.store.DeleteDeployment(context.Background(), "m"); err != nil {
		t.Fatal(err)
	}
	f.ctl.Notify("m")
	f.until("m", "forgotten", func(st serving.Status) bool { return st.Replicas == 0 && st.DesiredReplicas == 0 })
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs, err := f.ctl.Events(context.Background(), "m")
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events of a deleted deployment: %v", reasons(evs))
		}
		time.Sleep(time.Millisecond)
	}
}

func TestColdStartText(t *testing.T) {
	got := coldStartText([]serving.Phase{
		{Name: serving.PhaseProcessStarted, Duration: serving.D(12 * time.Millisecond)},
		{Name: serving.PhaseModelLoaded, Duration: serving.D(80 * time.Millisecond)},
		{Name: serving.PhaseReady, Duration: serving.D(433821 * time.Nanosecond)},
	})
	if want := "92ms (process_started 12ms, model_loaded 80ms, ready 434µs)"; got != want {
		t.Errorf("coldStartText = %q, want %q", got, want)
	}
	if got := coldStartText(nil); got != "not measured" {
		t.Errorf("coldStartText(nil) = %q", got)
	}
}
