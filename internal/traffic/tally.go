package traffic

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Bounds of the sample disagreements a Tally keeps.
const (
	// MaxSamples is how many sample disagreements a Tally keeps.
	MaxSamples = 5
	// MaxSampleBytes bounds the input and both outputs of one sample
	// together; longer ones are cut, with a note of how much was cut.
	MaxSampleBytes = 4 << 10
	// maxErrorBytes bounds the last shadow error a Tally keeps.
	maxErrorBytes = 512
)

// Pair is one mirrored request: how the shadow's outputs compared with the
// primary's, how long each took, and the request and both responses as
// bytes, kept (cut to MaxSampleBytes) only in a sample of a disagreement.
type Pair struct {
	Result                        Result
	PrimaryLatency, ShadowLatency time.Duration
	Input, PrimaryOutput          []byte
	ShadowOutput                  []byte
}

// Sample is one kept disagreement.
type Sample struct {
	Input   string `json:"input"`
	Primary string `json:"primary"`
	Shadow  string `json:"shadow"`
	Diff    Result `json:"diff"`
}

// Tally counts the outcomes of a shadow: requests compared and agreed,
// shadow errors, mirror copies dropped, latencies, a noise floor, and a
// uniform random sample of the disagreements (reservoir sampling, at most
// MaxSamples of at most MaxSampleBytes each), so that its memory is bounded
// however long the shadow runs. The zero Tally is ready to use and safe
// for concurrent use.
type Tally struct {
	mu               sync.Mutex
	compared, agreed int64
	shadowErrors     int64
	lastError        string
	lastErrorAt      time.Time
	dropped          int64
	primaryLatency   time.Duration // sums over the compared requests
	shadowLatency    time.Duration
	noiseCompared    int64
	noiseAgreed      int64
	disagreements    int64 // seen, for the reservoir
	samples          []Sample
	rng              rand.PCG
	// judged is compared + shadowErrors, kept apart so that Judged, which
	// the gateway asks on its request path, takes no lock.
	judged atomic.Int64
}

// Add counts one compared request.
func (t *Tally) Add(p Pair) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.compared++
	t.judged.Add(1)
	t.primaryLatency += p.PrimaryLatency
	t.shadowLatency += p.ShadowLatency
	if p.Result.Agree {
		t.agreed++
		return
	}
	t.disagreements++
	slot := len(t.samples)
	if slot >= MaxSamples {
		// Algorithm R: the n-th disagreement replaces a kept one with
		// probability MaxSamples/n.
		slot = int(t.rng.Uint64() % uint64(t.disagreements))
		if slot >= MaxSamples {
			return
		}
	}
	parts := fit([3][]byte{p.Input, p.PrimaryOutput, p.ShadowOutput}, MaxSampleBytes)
	s := Sample{Input: parts[0], Primary: parts[1], Shadow: parts[2], Diff: p.Result}
	if slot == len(t.samples) {
		t.samples = append(t.samples, s)
	} else {
		t.samples[slot] = s
	}
}

// Judged is how many mirrored requests t judged: compared, or failed by
// the shadow.
func (t *Tally) Judged() int64 { return t.judged.Load() }

// ShadowError counts a mirrored request the shadow failed (an error status
// or no answer); it is not compared. The last error is kept for status.
func (t *Tally) ShadowError(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.shadowErrors++
	t.judged.Add(1)
	if err != nil {
		t.lastError = clip(err.Error(), maxErrorBytes)
		t.lastErrorAt = time.Now()
	}
}

// Drop counts a mirror copy dropped: the shadow's concurrency limit was
// reached, or the request or the primary's answer was too large to copy
// (over 1 MiB).
func (t *Tally) Drop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropped++
}

// Noise counts one comparison of the primary with itself (two primary
// replicas, same input): the noise floor reported beside the agreement.
func (t *Tally) Noise(r Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.noiseCompared++
	if r.Agree {
		t.noiseAgreed++
	}
}

// Summary is what a Tally counted, as `ebb shadow status -o json` shows it.
type Summary struct {
	Compared int64 `json:"compared"`
	Agreed   int64 `json:"agreed"`
	// Agreement is Agreed / Compared, in 0..1; 0 when nothing was
	// compared (Verdict is then pending).
	Agreement       float64 `json:"agreement"`
	ShadowErrors    int64   `json:"shadowErrors"`
	LastShadowError string  `json:"lastShadowError,omitempty"`
	Dropped         int64   `json:"dropped"`
	// LatencyRatio is the shadow's mean latency over the primary's on the
	// compared requests; 0 when unknown.
	LatencyRatio float64 `json:"latencyRatio"`
	// NoiseCompared and NoiseAgreement are the primary-vs-primary
	// comparisons: how often the primary agrees with itself.
	NoiseCompared  int64    `json:"noiseCompared"`
	NoiseAgreement float64  `json:"noiseAgreement"`
	Samples        []Sample `json:"samples,omitempty"`
}

// Summary returns what t counted so far.
func (t *Tally) Summary() Summary { return t.Snapshot().Summary() }

// TallySnapshot is what a Tally counted, as plain cumulative counters that
// add up: the gateways of a cluster each send theirs to the operator
// (JSON), which sums them (MergeSnapshots, SumSnapshots) into the shadow's
// Summary.
type TallySnapshot struct {
	Compared     int64 `json:"compared"`
	Agreed       int64 `json:"agreed"`
	ShadowErrors int64 `json:"shadowErrors,omitempty"`
	// LastError is the last shadow error, and LastErrorAt when it came.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
	Dropped     int64     `json:"dropped,omitempty"`
	// PrimaryLatency and ShadowLatency are sums over the compared
	// requests, in nanoseconds on the wire.
	PrimaryLatency time.Duration `json:"primaryLatencyNs,omitempty"`
	ShadowLatency  time.Duration `json:"shadowLatencyNs,omitempty"`
	NoiseCompared  int64         `json:"noiseCompared,omitempty"`
	NoiseAgreed    int64         `json:"noiseAgreed,omitempty"`
	Samples        []Sample      `json:"samples,omitempty"`
}

// Snapshot returns what t counted so far.
func (t *Tally) Snapshot() TallySnapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	return TallySnapshot{
		Compared: t.compared, Agreed: t.agreed, ShadowErrors: t.shadowErrors,
		LastError: t.lastError, LastErrorAt: t.lastErrorAt, Dropped: t.dropped,
		PrimaryLatency: t.primaryLatency, ShadowLatency: t.shadowLatency,
		NoiseCompared: t.noiseCompared, NoiseAgreed: t.noiseAgreed,
		Samples: slices.Clone(t.samples),
	}
}

// Summary returns what s counted, as a Tally's Summary says it.
func (s TallySnapshot) Summary() Summary {
	sum := Summary{
		Compared: s.Compared, Agreed: s.Agreed, Agreement: fraction(s.Agreed, s.Compared),
		ShadowErrors: s.ShadowErrors, LastShadowError: s.LastError, Dropped: s.Dropped,
		NoiseCompared: s.NoiseCompared, NoiseAgreement: fraction(s.NoiseAgreed, s.NoiseCompared),
		Samples: slices.Clone(s.Samples),
	}
	if s.PrimaryLatency > 0 {
		sum.LatencyRatio = float64(s.ShadowLatency) / float64(s.PrimaryLatency)
	}
	return sum
}

// Check reports whether s is a snapshot a Tally could have taken: no
// negative count or latency, no more agreements than comparisons, at most
// MaxSamples samples, no more than its disagreements, each of bounded size.
// A receiver checks a snapshot before it keeps it.
func (s TallySnapshot) Check() error {
	for _, c := range []struct {
		name string
		v    int64
	}{
		{"compared", s.Compared}, {"agreed", s.Agreed}, {"shadowErrors", s.ShadowErrors}, {"dropped", s.Dropped},
		{"noiseCompared", s.NoiseCompared}, {"noiseAgreed", s.NoiseAgreed},
		{"primaryLatencyNs", int64(s.PrimaryLatency)}, {"shadowLatencyNs", int64(s.ShadowLatency)},
	} {
		if c.v < 0 {
			return fmt.Errorf("shadow tally: %s is %d, below 0", c.name, c.v)
		}
	}
	switch {
	case s.Agreed > s.Compared:
		return fmt.Errorf("shadow tally: %d agreed of %d compared", s.Agreed, s.Compared)
	case s.NoiseAgreed > s.NoiseCompared:
		return fmt.Errorf("shadow tally: noise floor: %d agreed of %d compared", s.NoiseAgreed, s.NoiseCompared)
	case len(s.Samples) > MaxSamples:
		return fmt.Errorf("shadow tally: %d samples, more than %d", len(s.Samples), MaxSamples)
	case int64(len(s.Samples)) > s.Compared-s.Agreed:
		return fmt.Errorf("shadow tally: %d samples of %d disagreements", len(s.Samples), s.Compared-s.Agreed)
	case len(s.LastError) > maxWireBytes(maxErrorBytes):
		return fmt.Errorf("shadow tally: last error of %d bytes, more than %d", len(s.LastError), maxWireBytes(maxErrorBytes))
	}
	for i, sm := range s.Samples {
		if n := len(sm.Input) + len(sm.Primary) + len(sm.Shadow); n > maxWireBytes(MaxSampleBytes) {
			return fmt.Errorf("shadow tally: sample %d has %d bytes, more than %d", i, n, maxWireBytes(MaxSampleBytes))
		}
	}
	return nil
}

// maxWireBytes is how long a text a Tally cut to n bytes may be once it
// went through JSON: each byte that is not UTF-8 becomes U+FFFD, 3 bytes.
func maxWireBytes(n int) int { return 3 * n }

// MergeSnapshots adds snapshots up into one, as if one Tally had counted
// what each of them did: counters and latency sums add, the last error is
// the latest one, and the samples are taken from each snapshot in turn
// (its first, then its second, ...) up to MaxSamples, so that every
// snapshot with disagreements contributes.
func MergeSnapshots(snaps ...TallySnapshot) TallySnapshot {
	var out TallySnapshot
	for _, s := range snaps {
		out.Compared += s.Compared
		out.Agreed += s.Agreed
		out.ShadowErrors += s.ShadowErrors
		out.Dropped += s.Dropped
		out.PrimaryLatency += s.PrimaryLatency
		out.ShadowLatency += s.ShadowLatency
		out.NoiseCompared += s.NoiseCompared
		out.NoiseAgreed += s.NoiseAgreed
		if s.LastError != "" && (out.LastError == "" || s.LastErrorAt.After(out.LastErrorAt)) {
			out.LastError, out.LastErrorAt = s.LastError, s.LastErrorAt
		}
	}
	for i := 0; len(out.Samples) < MaxSamples; i++ {
		more := false
		for _, s := range snaps {
			if i < len(s.Samples) && len(out.Samples) < MaxSamples {
				out.Samples = append(out.Samples, s.Samples[i])
				more = true
			}
		}
		if !more {
			break
		}
	}
	return out
}

// SumSnapshots returns the Summary of snapshots added up (MergeSnapshots):
// what the gateways of a cluster compared of one shadow, together.
func SumSnapshots(snaps ...TallySnapshot) Summary { return MergeSnapshots(snaps...).Summary() }

func fraction(n, of int64) float64 {
	if of <= 0 {
		return 0
	}
	return float64(n) / float64(of)
}

// Outcome is the judgement of a shadow.
type Outcome string

// Outcomes of a Verdict.
const (
	Pending Outcome = "pending"
	Pass    Outcome = "pass"
	Fail    Outcome = "fail"
)

// Verdict judges a shadow against its criteria, with the reason.
type Verdict struct {
	Outcome Outcome `json:"outcome"`
	Reason  string  `json:"reason"`
}

// Verdict judges what t counted; see Summary.Verdict.
func (t *Tally) Verdict(minCompared int, minAgreement float64) Verdict {
	return t.Summary().Verdict(minCompared, minAgreement)
}

// Verdict judges s: the shadow passes when at least minCompared requests
// were judged and at least minAgreement (0..1) of them agreed. A shadow
// error counts as a judged request that disagreed, so a shadow that fails
// fails its verdict instead of staying pending. With fewer requests than
// minCompared (at least 1 whatever is asked) the verdict is pending, never
// a pass; with a minAgreement outside 0..1 it is pending too, with the
// reason.
func (s Summary) Verdict(minCompared int, minAgreement float64) Verdict {
	if math.IsNaN(minAgreement) || minAgreement < 0 || minAgreement > 1 {
		return Verdict{Pending, fmt.Sprintf("min agreement %v is outside 0..1; give a fraction, e.g. 0.99", minAgreement)}
	}
	need := int64(max(minCompared, 1))
	judged := s.Compared + s.ShadowErrors
	if judged < need {
		return Verdict{Pending, fmt.Sprintf("judged %d of %d requests%s", judged, need, s.errorsNote())}
	}
	agreement := fraction(s.Agreed, judged)
	got, want := percents(agreement, minAgreement)
	if agreement < minAgreement {
		reason := fmt.Sprintf("agreement %s < %s over %d requests%s", got, want, judged, s.errorsNote())
		if s.NoiseCompared > 0 {
			reason += fmt.Sprintf("; the primary agrees with itself %s over %d requests", percent(s.NoiseAgreement), s.NoiseCompared)
		}
		return Verdict{Fail, reason}
	}
	return Verdict{Pass, fmt.Sprintf("agreement %s ≥ %s over %d requests", got, want, judged)}
}

func (s Summary) errorsNote() string {
	if s.ShadowErrors == 0 {
		return ""
	}
	return fmt.Sprintf(", of which %d shadow errors counted as disagreements", s.ShadowErrors)
}

// percent formats a fraction as a percentage with one decimal.
func percent(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" }

// fit cuts parts to fit budget bytes together: parts under a fair share
// keep all their bytes and leave the rest to the longer ones. A cut part
// ends with a note of how many bytes were cut, within its share, on a
// character boundary.
func fit(parts [3][]byte, budget int) [3]string {
	order := []int{0, 1, 2}
	sort.SliceStable(order, func(a, b int) bool { return len(parts[order[a]]) < len(parts[order[b]]) })
	var out [3]string
	left := budget
	for n, i := range order {
		share := left / (len(order) - n)
		b := parts[i]
		if len(b) <= share {
			out[i] = string(b)
			left -= len(b)
			continue
		}
		note := fmt.Sprintf("…(%d more bytes)", len(b))
		cut := max(share-len(note), 0)
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		note = fmt.Sprintf("…(%d more bytes)", len(b)-cut)
		out[i] = string(b[:cut]) + note
		left -= len(out[i])
	}
	return out
}
