package control

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/pool"
	"github.com/ebb-ml/ebb/internal/serving"
)

// TestPoolCrashIsolation hosts a model that crashes its replica, when it
// loads or when it predicts, among 24 good ones in a pool of 4 replicas
// with shards of 2. Its crashes take down only the replicas of its shard:
// the other replicas never restart, the models placed away from its shard
// answer throughout, every good model answers afterwards, and after
// three crashes the model is quarantined with a reason that its request,
// its status and the pool's status give.
func TestPoolCrashIsolation(t *testing.T) {
	for _, tt := range []struct {
		name    string
		content func(good string) string
		doing   string
	}{
		{"load", func(string) string { return crashOnLoad }, "loading"},
		{"predict", func(good string) string { return crashOnPredict + good }, "serving requests"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const n = 24
			f := newPoolFixture(t, []serving.Pool{poolOf("shared", serving.PoolSpec{Engine: "trees", MemoryBudget: "64MiB", MinReplicas: 4, MaxReplicas: 4, ShardSize: 2})})
			paths := make([]string, n)
			for i := range n {
				paths[i] = tinyPoolModel(t, f.dir, uint64(200+i))
				f.deploy(pooled(fmt.Sprintf("g-%d", i), paths[i], "shared"))
			}
			bad := filepath.Join(f.dir, "bad.json")
			if err := os.WriteFile(bad, []byte(tt.content(paths[0])), 0o644); err != nil {
				t.Fatal(err)
			}
			f.deploy(pooled("bad", bad, "shared"))
			f.until("4 ready replicas", func() bool { return f.ctl.PoolStatus("shared").ReadyReplicas == 4 })
			for i := range n {
				if err := f.check(fmt.Sprintf("g-%d", i), paths[i], 1); err != nil {
					t.Fatal(err)
				}
			}
			slots := []string{"0", "1", "2", "3"}
			shard := pool.Shard("bad", slots, 2)
			var apart []int // good models whose shard shares no replica with bad's
			for i := range n {
				if !slices.ContainsFunc(pool.Shard(fmt.Sprintf("g-%d", i), slots, 2), func(s string) bool { return slices.Contains(shard, s) }) {
					apart = append(apart, i)
				}
			}
			if len(apart) == 0 {
				t.Fatalf("no good model is placed apart from bad's shard %v", shard)
			}

			// The models apart keep answering while bad crashes its shard.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var errs []error
			var mu sync.Mutex
			wg.Go(func() {
				for k := 0; ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					i := apart[k%len(apart)]
					if err := f.check(fmt.Sprintf("g-%d", i), paths[i], uint64(k)); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}
			})
			// A request may fail before the third crash (the gateway gives
			// up after 4 replicas); the next ones crash the shard again.
			var err error
			for try := 0; try < 5; try++ {
				if err = f.check("bad", paths[0], 1); err == nil || strings.Contains(err.Error(), "quarantined") {
					break
				}
			}
			close(stop)
			wg.Wait()
			if err == nil || !strings.Contains(err.Error(), "quarantined") {
				t.Fatalf("request for the crashing model: %v, want it failed as quarantined", err)
			}
			for _, err := range errs {
				t.Errorf("a model apart from the crashing one failed meanwhile: %v", err)
			}
			st := f.ctl.Status("bad")
			if st.Pool == nil || !strings.Contains(st.Pool.Quarantine, "crashed its replica 3 times") || !strings.Contains(st.Failure, "quarantined") {
				t.Errorf("status of bad: failure %q, pool %+v: want its quarantine and why", st.Failure, st.Pool)
			}
			f.until("quarantine in the pool's status", func() bool {
				q := f.ctl.PoolStatus("shared").Quarantined
				return len(q) == 1 && q[0].Model == "bad" && strings.Contains(q[0].Reason, "crashed")
			})
			events, _ := f.ctl.Events(t.Context(), "bad")
			if !slices.ContainsFunc(events, func(e serving.Event) bool {
				return e.Reason == serving.ReasonReplicaExited && strings.Contains(e.Message, tt.doing)
			}) {
				t.Errorf("events of bad %+v: want a replica exit while %s", events, tt.doing)
			}

			f.steady("the shard back", func() bool { return f.ctl.PoolStatus("shared").ReadyReplicas == 4 })
			starts := f.backend.slotStarts()
			for _, s := range slots {
				switch in := slices.Contains(shard, s); {
				case in && starts[s] < 2:
					t.Errorf("slot %s of bad's shard started %d replicas, want restarts", s, starts[s])
				case !in && starts[s] != 1:
					t.Errorf("slot %s, apart from bad's shard %v, started %d replicas, want 1", s, shard, starts[s])
				}
			}
			for i := range n {
				if err := f.check(fmt.Sprintf("g-%d", i), paths[i], 2); err != nil {
					t.Errorf("after the quarantine: %v", err)
				}
			}
			// Quarantined, it fails at once and crashes nothing more.
			began := time.Now()
			if err := f.check("bad", paths[0], 3); err == nil || !strings.Contains(err.Error(), "quarantined") || time.Since(began) > time.Second {
				t.Errorf("request for the quarantined model: %v after %s", err, time.Since(began))
			}
			if got := f.backend.slotStarts(); !maps.Equal(got, starts) {
				t.Errorf("replicas started after the quarantine: %v, then %v", starts, got)
			}
		})
	}
}
