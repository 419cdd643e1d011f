package traffic

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewSplitRefusesBadTargets(t *testing.T) {
	tests := []struct {
		name    string
		targets []Target
		want    []string // parts of the error, one per problem
	}{
		{"none", nil, []string{"give at least one target"}},
		{"sum below 100", []Target{{"v3", 90}, {"v4", 5}}, []string{"weights sum to 95 (v3=90,v4=5); they must sum to 100"}},
		{"sum above 100", []Target{{"v3", 100}, {"v4", 5}}, []string{"weights sum to 105"}},
		{"negative weight", []Target{{"v3", 105}, {"v4", -5}}, []string{`"v3" has weight 105, outside 0..100`, `"v4" has weight -5, outside 0..100`}},
		{"repeated name", []Target{{"v3", 50}, {"v3", 50}}, []string{`"v3" is listed twice`}},
		{"empty name", []Target{{"", 50}, {"v3", 50}}, []string{"target 1 has no name"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSplit(tc.targets)
			if err == nil {
				t.Fatalf("NewSplit(%v) = %v, want an error", tc.targets, s)
			}
			if got := len(strings.Split(err.Error(), "\n")); got != len(tc.want) {
				t.Errorf("error has %d lines, want %d: %v", got, len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestPickFollowsWeights(t *testing.T) {
	tests := []struct {
		name    string
		targets []Target
	}{
		{"one target", []Target{{"v3", 100}}},
		{"canary at 5%", []Target{{"v4", 5}, {"v3", 95}}},
		{"three ways with a pinned-only target", []Target{{"v4", 25}, {"v3", 75}, {"v2", 0}}},
		{"even", []Target{{"a", 50}, {"b", 50}}},
	}
	const n = 200_000
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSplit(tc.targets)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(3, 4))
			random := make([]int, len(tc.targets))
			keyed := make([]int, len(tc.targets))
			for i := range n {
				random[s.Pick(rng.Uint64())]++
				keyed[s.PickKey(fmt.Sprintf("user-%d", i))]++
			}
			for i, tg := range tc.targets {
				for _, c := range []struct {
					how   string
					count int
				}{{"Pick", random[i]}, {"PickKey", keyed[i]}} {
					got := float64(c.count) / n * 100
					// Four standard deviations of a binomial share.
					p := float64(tg.Weight) / 100
					bound := 4 * math.Sqrt(p*(1-p)/n) * 100
					if math.Abs(got-float64(tg.Weight)) > bound || (tg.Weight == 0 && c.count > 0) {
						t.Errorf("%s sent %.2f%% to %s, want %d%% ± %.2f", c.how, got, tg.Name, tg.Weight, bound)
					}
				}
			}
		})
	}
}

// TestStickyKeysOnlyMoveOntoTheCanary checks the property rollouts rely on:
// with the canary listed first, a key that is on the canary at one step is
// on it at every later step, and a rollback sends every key to the primary.
func TestStickyKeysOnlyMoveOntoTheCanary(t *testing.T) {
	steps := []int{0, 1, 5, 10, 25, 50, 75, 99, 100}
	const keys = 20_000
	onCanary := make([]bool, keys)
	for _, w := range steps {
		s, err := NewSplit([]Target{{"canary", w}, {"primary", 100 - w}, {"old", 0}})
		if err != nil {
			t.Fatal(err)
		}
		moved := 0
		for k := range keys {
			now := s.PickKey(fmt.Sprintf("tenant-%d", k)) == 0
			if onCanary[k] && !now {
				t.Fatalf("key tenant-%d left the canary when its weight grew to %d%%", k, w)
			}
			if now && !onCanary[k] {
				moved++
			}
			onCanary[k] = now
		}
		t.Logf("weight %3d%%: %d keys moved onto the canary", w, moved)
	}
	back, err := NewSplit([]Target{{"canary", 0}, {"primary", 100}})
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys {
		if got := back.PickKey(fmt.Sprintf("tenant-%d", k)); got != 1 {
			t.Fatalf("after a rollback tenant-%d picks target %d, want the primary", k, got)
		}
	}
}

// TestKeyPointIsFixed pins the point of a key to xxHash64 test vectors
// (XXH64 of "", "a" and "abc" with seed 0 are ef46db3751d8e999,
// d24ec4f1a98c6e5b and 44bc2cf5ad770999), modulo 100: a change would move
// every sticky key of every running rollout.
func TestKeyPointIsFixed(t *testing.T) {
	got := map[string]int{}
	for _, k := range []string{"", "a", "abc"} {
		got[k] = KeyPoint(k)
	}
	want := map[string]int{
		"":    int(uint64(0xef46db3751d8e999) % 100),
		"a":   int(uint64(0xd24ec4f1a98c6e5b) % 100),
		"abc": int(uint64(0x44bc2cf5ad770999) % 100),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("KeyPoint changed (-want +got):\n%s", diff)
	}
}

func TestSplitIndexAndTargets(t *testing.T) {
	targets := []Target{{"v4", 5}, {"v3", 95}, {"v2", 0}}
	s, err := NewSplit(targets)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Index("v2"); got != 2 {
		t.Errorf("Index(v2) = %d, want 2", got)
	}
	if got := s.Index("v9"); got != -1 {
		t.Errorf("Index(v9) = %d, want -1", got)
	}
	got := s.Targets()
	got[0].Weight = 50
	if diff := cmp.Diff(targets, s.Targets()); diff != "" {
		t.Errorf("Targets shares memory with the split (-want +got):\n%s", diff)
	}
}

func BenchmarkPick(b *testing.B) {
	s, err := NewSplit([]Target{{"v4", 25}, {"v3", 75}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	r := uint64(1)
	for b.Loop() {
		r = r*6364136223846793005 + 1442695040888963407
		s.Pick(r)
	}
}

func BenchmarkPickKey(b *testing.B) {
	s, err := NewSplit([]Target{{"v4", 25}, {"v3", 75}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.PickKey("user-1234567890")
	}
}
