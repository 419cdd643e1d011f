package traffic

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Target is one version of a split and its percent of the requests.
type Target struct {
	Name   string
	Weight int
}

// Split divides requests between targets by weight. The percent points
// 0..99 are laid out in the order of the targets: the first target owns
// points [0, w1), the next [w1, w1+w2), and so on. A request falls on one
// point, drawn at random (Pick) or from a hash of a key (PickKey).
//
// For sticky keys to stay put during a rollout, list the canary first and
// the primary second, then any target whose weight is not changing: as the
// canary's weight grows from 5 to 25 its range grows from [0,5) to [0,25)
// and only keys of the primary move, onto the canary; a rollback moves them
// back. A Split is immutable and safe for concurrent use.
type Split struct {
	targets []Target
	// owner maps each percent point to the index of its target.
	owner [100]int32
}

// NewSplit returns the Split of targets, or an error that names every
// problem: no target, an empty or repeated name, a weight outside 0..100,
// weights that do not sum to 100.
func NewSplit(targets []Target) (*Split, error) {
	if len(targets) == 0 {
		return nil, errors.New("traffic split: give at least one target with its weight, e.g. v3=95,v4=5")
	}
	var errs []error
	seen := make(map[string]bool, len(targets))
	sum := 0
	for i, t := range targets {
		switch {
		case t.Name == "":
			errs = append(errs, fmt.Errorf("traffic split: target %d has no name; name the version it sends requests to", i+1))
		case seen[t.Name]:
			errs = append(errs, fmt.Errorf("traffic split: target %q is listed twice; give each version once", t.Name))
		}
		seen[t.Name] = true
		if t.Weight < 0 || t.Weight > 100 {
			errs = append(errs, fmt.Errorf("traffic split: target %q has weight %d, outside 0..100 (percent of requests)", t.Name, t.Weight))
		}
		sum += t.Weight
	}
	if sum != 100 {
		errs = append(errs, fmt.Errorf("traffic split: weights sum to %d (%s); they must sum to 100", sum, formatTargets(targets)))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s := &Split{targets: append([]Target(nil), targets...)}
	p := 0
	for i, t := range targets {
		for range t.Weight {
			s.owner[p] = int32(i)
			p++
		}
	}
	return s, nil
}

// Targets returns a copy of the split's targets, in order.
func (s *Split) Targets() []Target { return append([]Target(nil), s.targets...) }

// Index returns the index of the target called name, or -1: for a request
// that pins its version by name, whatever the target's weight.
func (s *Split) Index(name string) int {
	for i, t := range s.targets {
		if t.Name == name {
			return i
		}
	}
	return -1
}

// Pick returns the index of the target for a request that drew r, a
// uniformly random number. A target of weight 0 is never picked.
func (s *Split) Pick(r uint64) int { return int(s.owner[point(r)]) }

// PickKey returns the index of the target for a request with a sticky key:
// the same key picks the same target, in every process and after restarts,
// as long as the weights leave the key's point with that target. The point
// is KeyPoint(key), the one routing.Split.PickKey uses too, so both place a
// key alike.
func (s *Split) PickKey(key string) int { return int(s.owner[KeyPoint(key)]) }

// point maps a random r onto 0..99 evenly (Lemire's multiply-shift).
func point(r uint64) int {
	hi, _ := bits.Mul64(r, 100)
	return int(hi)
}

// KeyPoint is the point in 0..99 of a sticky key: its 64-bit xxHash (seed
// 0) modulo 100. It must never change: changing it moves every sticky key
// of every running rollout.
func KeyPoint(key string) int { return int(xxhash.Sum64String(key) % 100) }

// formatTargets writes targets as v3=95,v4=5 for messages.
func formatTargets(targets []Target) string {
	s := make([]string, len(targets))
	for i, t := range targets {
		s[i] = fmt.Sprintf("%s=%d", t.Name, t.Weight)
	}
	return strings.Join(s, ",")
}
