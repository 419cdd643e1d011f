package control

import (
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

func TestCrashLooping(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(secs ...int) []time.Time {
		var ts []time.Time
		for _, s := range secs {
			ts = append(ts, t0.Add(time.Duration(s)*time.Second))
		}
		return ts
	}
	for _, tc := range []struct {
		name     string
		failures []time.Time
		now      time.Time
		limit    int
		window   time.Duration
		want     bool
		wantN    int
	}{
		{"none", nil, t0, 3, time.Minute, false, 0},
		{"one", at(0), t0.Add(time.Second), 3, time.Minute, false, 1},
		{"two", at(0, 5), t0.Add(10 * time.Second), 3, time.Minute, false, 2},
		{"three in the window", at(0, 5, 20), t0.Add(20 * time.Second), 3, time.Minute, true, 3},
		{"three, the first out of the window", at(0, 50, 70), t0.Add(70 * time.Second), 3, time.Minute, false, 2},
		{"at the window's edge", at(0, 30, 60), t0.Add(60 * time.Second), 3, time.Minute, true, 3},
		{"limit one", at(0), t0, 1, time.Minute, true, 1},
		{"a clock that stepped back ignores the future", at(0, 5, 10), t0.Add(5 * time.Second), 3, time.Minute, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, n := crashLooping(tc.failures, tc.now, tc.limit, tc.window)
			if got != tc.want || n != tc.wantN {
				t.Errorf("crashLooping = %v, %d; want %v, %d", got, n, tc.want, tc.wantN)
			}
		})
	}
}

// TestQuickCrashesHoldRequests: replicas that die right after they become
// ready are restarted while requests stay held; the deployment fails, with
// the reason, only after CrashLimit failed starts in a row.
func TestQuickCrashesHoldRequests(t *testing.T) {
	f := newFixture(t, dep("m", serving.Scaling{MinReplicas: 1, MaxReplicas: 1}))
	f.tick()
	for i := 1; i <= DefaultCrashLimit; i++ {
		st := f.tickUntil("m", "a ready replica", ready(1))
		f.backend.crash(st.ReplicaStatuses[0].ID)
		st = f.until("m", "the crash seen", func(st serving.Status) bool { return st.ReadyReplicas == 0 })
		r := f.routes.Lookup("m")
		if i < DefaultCrashLimit {
			if st.Failure != "" || r.Failure != "" {
				t.Fatalf("after %d quick crashes the deployment failed (route failure %q); want requests held", i, r.Failure)
			}
			if !strings.Contains(st.Reason, "holding requests") {
				t.Errorf("after %d quick crashes reason = %q; want it to say requests are held", i, st.Reason)
			}
			continue
		}
		if !strings.Contains(st.Failure, "3 starts failed in a row") || !strings.Contains(st.Failure, "exited unexpectedly") ||
			!strings.Contains(st.Failure, "signal: killed") {
			t.Errorf("status failure = %q; want the count and the last crash's reason", st.Failure)
		}
		if r.Failure != st.Failure {
			t.Errorf("route failure = %q; want %q so held requests fail fast", r.Failure, st.Failure)
		}
	}
	// It keeps restarting, and serves again once a replica is ready.
	st := f.tickUntil("m", "served again", ready(1))
	if st.Failure != "" || f.routes.Lookup("m").Failure != "" {
		t.Errorf("a ready replica did not clear the failure: %+v", st)
	}
}

// TestStableReplicaEndsTheRun: a replica that stays ready for earlyCrash
// forgives the failures before it, so later crashes start a new run.
func TestStableReplicaEndsTheRun(t *testing.T) {
	f := newFixture(t, dep("m", serving.Scaling{MinReplicas: 1, MaxReplicas: 1}))
	f.tick()
	crash := func() {
		t.Helper()
		st := f.tickUntil("m", "a ready replica", ready(1))
		f.backend.crash(st.ReplicaStatuses[0].ID)
		f.until("m", "the crash seen", func(st serving.Status) bool { return st.ReadyReplicas == 0 })
	}
	for range DefaultCrashLimit - 1 {
		crash()
	}
	st := f.tickUntil("m", "a ready replica", ready(1))
	f.clock.Step(earlyCrash) // it serves steadily
	victim := st.ReplicaStatuses[0].ID
	f.backend.crash(victim)
	// Not an early crash: it is replaced at once, without a backoff.
	f.until("m", "a replacement", func(st serving.Status) bool {
		return ready(1)(st) && st.ReplicaStatuses[0].ID != victim
	})
	crash()
	crash()
	if st := f.ctl.Status("m"); st.Failure != "" {
		t.Errorf("failed after 2 quick crashes following a stable replica: %q", st.Failure)
	}
}
