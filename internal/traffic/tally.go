package traffic

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
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
	dropped          int64
	primaryLatency   time.Duration // sums over the compared requests
	shadowLatency    time.Duration
	noiseCompared    int64
	noiseAgreed      int64
	disagreements    int64 // seen, for the reservoir
	samples          []Sample
	rng              rand.PCG
}

// Add counts one compared request.
func (t *Tally) Add(p Pair) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.compared++
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

// ShadowError counts a mirrored request the shadow failed (an error status
// or no answer); it is not compared. The last error is kept for status.
func (t *Tally) ShadowError(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.shadowErrors++
	if err != nil {
		t.lastError = clip(err.Error(), maxErrorBytes)
	}
}

// Drop counts a mirror copy dropped because the shadow's concurrency limit
// was reached.
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
func (t *Tally) Summary() Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Summary{
		Compared: t.compared, Agreed: t.agreed, Agreement: fraction(t.agreed, t.compared),
		ShadowErrors: t.shadowErrors, LastShadowError: t.lastError, Dropped: t.dropped,
		NoiseCompared: t.noiseCompared, NoiseAgreement: fraction(t.noiseAgreed, t.noiseCompared),
		Samples: slices.Clone(t.samples),
	}
	if t.primaryLatency > 0 {
		s.LatencyRatio = float64(t.shadowLatency) / float64(t.primaryLatency)
	}
	return s
}

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
