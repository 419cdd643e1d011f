package pool

import (
	"cmp"
	"slices"
)

// Rank returns replicas ordered by model's preference, best first: the
// rendezvous (highest random weight) order of a stable hash of each
// (model, replica) pair. The order depends only on the model and the set
// of replica IDs, not on their order in replicas. Replicas should be named
// by slot ("0", "1", ... or pod ordinals) so that a replica restarted in
// its slot keeps its models.
func Rank(model string, replicas []string) []string {
	return newRanker(replicas).rank(model, len(replicas))
}

// Shard returns model's first k replicas in Rank order: the replicas it is
// placed on. k is clamped to [1, len(replicas)].
func Shard(model string, replicas []string, k int) []string {
	return newRanker(replicas).rank(model, k)
}

// ranker ranks replicas for many models, their hashes computed once.
type ranker struct {
	ids    []string
	hashes []uint64
}

func newRanker(replicas []string) *ranker {
	r := &ranker{ids: slices.Clone(replicas), hashes: make([]uint64, len(replicas))}
	for i, id := range r.ids {
		r.hashes[i] = mix(hash64(id))
	}
	return r
}

// rank returns model's best k replicas, best first (k clamped to [1, N]).
func (r *ranker) rank(model string, k int) []string {
	n := len(r.ids)
	if n == 0 {
		return nil
	}
	k = min(max(k, 1), n)
	type scored struct {
		score uint64
		id    string
	}
	h := hash64(model)
	all := make([]scored, n)
	for i, id := range r.ids {
		all[i] = scored{mix(h ^ r.hashes[i]), id}
	}
	slices.SortFunc(all, func(a, b scored) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	out := make([]string, k)
	for i := range out {
		out[i] = all[i].id
	}
	return out
}

// inShard reports whether replica id is among model's best k replicas
// (k clamped to [1, N]), without ranking them all.
func (r *ranker) inShard(model, id string, k int) bool {
	h := hash64(model)
	i := slices.Index(r.ids, id)
	if i < 0 {
		return false
	}
	mine := mix(h ^ r.hashes[i])
	better := 0
	for j, other := range r.ids {
		score := mix(h ^ r.hashes[j])
		if j != i && (score > mine || score == mine && other < id) {
			better++
		}
	}
	return better < min(max(k, 1), len(r.ids))
}

// hash64 is 64-bit FNV-1a: stable across processes and releases, unlike
// hash/maphash, so every control loop and replay agrees on placements.
func hash64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix is SplitMix64's finalizer: it spreads FNV's weak low-order mixing
// over every bit, so scores of one model on different replicas, and of
// different models on one replica, behave as independent.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
