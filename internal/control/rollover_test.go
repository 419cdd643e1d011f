package control

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/ebb-ml/ebb/internal/serving"
)

// lockedBuffer is a bytes.Buffer safe for the loop's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logLines returns the JSON log lines with message msg.
func logLines(t *testing.T, log string, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(log), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func setModel(t *testing.T, f *fixture, name, model string) {
	t.Helper()
	if _, err := f.store.UpdateDeployment(context.Background(), name, func(d *serving.Deployment) error {
		d.Spec.Model = model
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f.ctl.Notify(name)
}

func outdated(st serving.Status) int {
	n := 0
	for _, r := range st.ReplicaStatuses {
		if r.Outdated {
			n++
		}
	}
	return n
}

// TestRolloverStatus: while a new model rolls in, status says which
// generation new replicas run, marks the old replicas outdated, and its
// reason tells the roll's progress (not the autoscaler's last decision);
// once done, the reason says the roll happened. The log names both models,
// paths included.
func TestRolloverStatus(t *testing.T) {
	f := newFixture(t, dep("m", serving.Scaling{MinReplicas: 2, MaxReplicas: 2}))
	f.stop()
	var log lockedBuffer
	f.ctl = New(f.store, f.backend, f.routes, Options{Clock: f.clock, Logger: slog.New(slog.NewJSONHandler(&log, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.ctl.Run(ctx) }()
	<-f.ctl.Loaded()
	st := f.tickUntil("m", "2 ready", ready(2))
	if st.SpecGeneration != 1 || outdated(st) != 0 {
		t.Fatalf("steady status: specGeneration %d, %d outdated; want 1, 0", st.SpecGeneration, outdated(st))
	}

	// v2 never gets ready: the roll stays under way.
	f.backend.hang["/models/m-v2.json"] = true
	setModel(t, f, "m", "/models/m-v2.json")
	st = f.until("m", "roll under way", func(st serving.Status) bool { return st.SpecGeneration == 2 && st.Replicas == 4 })
	if want := "rolling replicas from /models/m.json to /models/m-v2.json: 0 of 2 new ready; old: 2 serving, 0 draining"; st.Reason != want {
		t.Errorf("reason during the roll = %q, want %q", st.Reason, want)
	}
	if n := outdated(st); n != 2 {
		t.Errorf("%d replicas outdated, want the 2 old ones: %+v", n, st.ReplicaStatuses)
	}
	lines := logLines(t, log.String(), "new model for deployment; rolling replicas")
	if len(lines) != 1 || lines[0]["from"] != "/models/m.json" || lines[0]["to"] != "/models/m-v2.json" {
		t.Errorf("roll log lines = %v; want from and to the two paths", lines)
	}

	// v3 loads: it replaces both v1 (serving) and v2 (starting).
	setModel(t, f, "m", "/models/m-v3.json")
	st = f.until("m", "v3 alone", func(st serving.Status) bool {
		return ready(2)(st) && st.SpecGeneration == 3 && outdated(st) == 0
	})
	if want := "rolled replicas from /models/m.json to /models/m-v3.json"; st.Reason != want {
		t.Errorf("reason after the roll = %q, want %q", st.Reason, want)
	}
	for _, r := range st.ReplicaStatuses {
		if got := f.backend.get(r.ID).spec.Model; got != "/models/m-v3.json" {
			t.Errorf("replica %s serves %s", r.ID, got)
		}
	}
	evs, err := f.ctl.Events(context.Background(), "m")
	if err != nil {
		t.Fatal(err)
	}
	var rolled []string
	for _, e := range evs {
		if e.Reason == serving.ReasonRolled {
			rolled = append(rolled, e.Message)
		}
	}
	want := []string{"rolling replicas from /models/m.json to /models/m-v2.json", "rolling replicas from /models/m.json to /models/m-v3.json"}
	if strings.Join(rolled, "\n") != strings.Join(want, "\n") {
		t.Errorf("Rolled events %q, want %q", rolled, want)
	}

	// A change of scaling alone moves specGeneration without a roll.
	if _, err := f.store.UpdateDeployment(context.Background(), "m", func(d *serving.Deployment) error {
		d.Spec.Scaling.MaxReplicas = 3
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f.ctl.Notify("m")
	f.until("m", "specGeneration 4", func(st serving.Status) bool { return st.SpecGeneration == 4 && ready(2)(st) && outdated(st) == 0 })
}
