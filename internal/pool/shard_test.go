package pool

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func replicaIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	return ids
}

func modelNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("customer-%05d", i)
	}
	return names
}

// binomial returns C(n, k).
func binomial(n, k int) float64 {
	c := 1.0
	for i := range k {
		c = c * float64(n-i) / float64(i+1)
	}
	return c
}

func TestShardBasics(t *testing.T) {
	ids := replicaIDs(8)
	tests := []struct {
		name string
		k    int
		want int
	}{
		{"k=3", 3, 3},
		{"k=0 is 1", 0, 1},
		{"k>N is N", 20, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Shard("fraud-eu", ids, tt.k)
			if len(got) != tt.want {
				t.Fatalf("Shard(k=%d) has %d replicas, want %d", tt.k, len(got), tt.want)
			}
			if !slices.Equal(got, Rank("fraud-eu", ids)[:tt.want]) {
				t.Errorf("Shard %v is not the start of Rank %v", got, Rank("fraud-eu", ids))
			}
			seen := map[string]bool{}
			for _, id := range got {
				if seen[id] {
					t.Errorf("replica %s twice in %v", id, got)
				}
				seen[id] = true
			}
		})
	}
	// The order of the replicas given does not matter; the result is
	// deterministic.
	rev := slices.Clone(ids)
	slices.Reverse(rev)
	if a, b := Rank("m", ids), Rank("m", rev); !slices.Equal(a, b) {
		t.Errorf("Rank depends on the order of the replicas: %v vs %v", a, b)
	}
	if got := Shard("m", nil, 2); got != nil {
		t.Errorf("Shard of no replicas = %v, want nil", got)
	}
}

// TestShardDistribution: over 20,000 models each replica holds its share
// k/N of the placements, as evenly as an ideal random placement would.
func TestShardDistribution(t *testing.T) {
	for _, c := range []struct{ n, k int }{{10, 3}, {6, 2}, {25, 4}} {
		t.Run(fmt.Sprintf("N=%d,k=%d", c.n, c.k), func(t *testing.T) {
			ids := replicaIDs(c.n)
			models := modelNames(20000)
			count := map[string]int{}
			for _, m := range models {
				for _, id := range Shard(m, ids, c.k) {
					count[id]++
				}
			}
			want := float64(len(models)*c.k) / float64(c.n)
			worst := 0.0
			for _, id := range ids {
				worst = max(worst, math.Abs(float64(count[id])-want)/want)
			}
			// An ideal random placement spreads each count binomially.
			bound := 5 * math.Sqrt(want*(1-float64(c.k)/float64(c.n))) / want
			t.Logf("placements per replica: mean %.0f, worst deviation %.2f%% (bound %.2f%%: 5 standard deviations of an ideal random placement)", want, 100*worst, 100*bound)
			if worst > bound {
				t.Errorf("a replica's placements deviate %.1f%% from the mean %.0f, want within %.1f%%: %v", 100*worst, want, 100*bound, count)
			}
		})
	}
}

// TestShardOverlap: random pairs of models share all k replicas with the
// probability of two random k-subsets, 1/C(N,k), and share none about as
// often as random subsets would.
func TestShardOverlap(t *testing.T) {
	for _, c := range []struct{ n, k int }{{10, 3}, {8, 2}, {16, 4}} {
		t.Run(fmt.Sprintf("N=%d,k=%d", c.n, c.k), func(t *testing.T) {
			ids := replicaIDs(c.n)
			models := modelNames(20000)
			shards := make([][]string, len(models))
			for i, m := range models {
				shards[i] = Shard(m, ids, c.k)
				slices.Sort(shards[i])
			}
			rng := rand.New(rand.NewPCG(1, 2))
			const pairs = 200000
			all, none := 0, 0
			for range pairs {
				a, b := rng.IntN(len(models)), rng.IntN(len(models))
				if a == b {
					b = (b + 1) % len(models)
				}
				shared := 0
				for _, id := range shards[a] {
					if slices.Contains(shards[b], id) {
						shared++
					}
				}
				switch shared {
				case c.k:
					all++
				case 0:
					none++
				}
			}
			wantAll := 1 / binomial(c.n, c.k)
			wantNone := binomial(c.n-c.k, c.k) / binomial(c.n, c.k)
			gotAll, gotNone := float64(all)/pairs, float64(none)/pairs
			t.Logf("pairs sharing all %d replicas: %.4f%% (expected 1/C(%d,%d) = %.4f%%); sharing none: %.2f%% (expected %.2f%%)",
				c.k, 100*gotAll, c.n, c.k, 100*wantAll, 100*gotNone, 100*wantNone)
			// Binomial counts: several standard deviations of slack.
			if sd := math.Sqrt(wantAll * pairs); math.Abs(float64(all)-wantAll*pairs) > 5*sd+5 {
				t.Errorf("%d pairs share all replicas, expected %.0f ± %.0f", all, wantAll*pairs, 5*sd)
			}
			if math.Abs(gotNone-wantNone) > 0.01 {
				t.Errorf("%.2f%% of pairs share no replica, expected %.2f%%", 100*gotNone, 100*wantNone)
			}
		})
	}
}

// TestShardMovement: adding a replica moves about k/(N+1) of the models,
// one placement each, and removing one moves only the models it held, one
// placement each: within 1.2× the least any balanced placement can move.
func TestShardMovement(t *testing.T) {
	models := modelNames(20000)
	for _, c := range []struct{ n, k int }{{10, 3}, {6, 2}, {4, 1}} {
		t.Run(fmt.Sprintf("N=%d,k=%d", c.n, c.k), func(t *testing.T) {
			before := replicaIDs(c.n)
			grown := replicaIDs(c.n + 1)
			shrunk := slices.Delete(slices.Clone(before), 2, 3) // replica "2" leaves
			var added, removed int
			for _, m := range models {
				old := Shard(m, before, c.k)
				a := moved(old, Shard(m, grown, c.k))
				r := moved(old, Shard(m, shrunk, c.k))
				if a > 1 || r > 1 {
					t.Fatalf("model %s moved %d placements on adding a replica and %d on removing one, want at most 1", m, a, r)
				}
				if r == 1 && !slices.Contains(old, "2") {
					t.Fatalf("model %s moved although the replica that left did not hold it", m)
				}
				added += a
				removed += r
			}
			wantAdd := float64(len(models)*c.k) / float64(c.n+1)
			wantRemove := float64(len(models)*c.k) / float64(c.n)
			t.Logf("adding a replica moved %d placements (theory %.0f, ratio %.3f); removing one moved %d (theory %.0f, ratio %.3f)",
				added, wantAdd, float64(added)/wantAdd, removed, wantRemove, float64(removed)/wantRemove)
			if float64(added) > 1.2*wantAdd || float64(removed) > 1.2*wantRemove {
				t.Errorf("moved %d and %d placements, want at most 1.2 × %.0f and 1.2 × %.0f", added, removed, wantAdd, wantRemove)
			}
		})
	}
}

// moved counts the replicas of after that were not in before.
func moved(before, after []string) int {
	n := 0
	for _, id := range after {
		if !slices.Contains(before, id) {
			n++
		}
	}
	return n
}

func BenchmarkShard(b *testing.B) {
	r := newRanker(replicaIDs(16))
	for i := 0; b.Loop(); i++ {
		r.rank("customer-model", 3)
	}
}
