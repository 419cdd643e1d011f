package traffic

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var agree = Result{Agree: true}

func differ(i int) Result {
	return Result{Tensor: "y", Index: i, Primary: "1", Shadow: "2", Reason: "differs"}
}

func TestTallySummary(t *testing.T) {
	var tl Tally
	for i := range 10 {
		r := agree
		if i >= 8 {
			r = differ(i)
		}
		tl.Add(Pair{Result: r, PrimaryLatency: 10 * time.Millisecond, ShadowLatency: 30 * time.Millisecond,
			Input: []byte(fmt.Sprintf(`{"inputs":[%d]}`, i)), PrimaryOutput: []byte("p"), ShadowOutput: []byte("s")})
	}
	tl.ShadowError(errors.New("503 Service Unavailable"))
	tl.ShadowError(errors.New("connection refused"))
	tl.Drop()
	tl.Noise(agree)
	tl.Noise(agree)
	tl.Noise(agree)
	tl.Noise(differ(0))
	want := Summary{
		Compared: 10, Agreed: 8, Agreement: 0.8, ShadowErrors: 2, LastShadowError: "connection refused", Dropped: 1,
		LatencyRatio: 3, NoiseCompared: 4, NoiseAgreement: 0.75,
		Samples: []Sample{
			{Input: `{"inputs":[8]}`, Primary: "p", Shadow: "s", Diff: differ(8)},
			{Input: `{"inputs":[9]}`, Primary: "p", Shadow: "s", Diff: differ(9)},
		},
	}
	got := tl.Summary()
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
		t.Errorf("Summary (-want +got):\n%s", diff)
	}
	got.Samples[0].Input = "changed"
	if tl.Summary().Samples[0].Input == "changed" {
		t.Error("Summary shares its samples with the Tally")
	}
}

func TestTallyKeepsABoundedRandomSample(t *testing.T) {
	var tl Tally
	big := []byte(strings.Repeat("x", 10_000))
	for i := range 1000 {
		tl.Add(Pair{Result: differ(i), Input: big, PrimaryOutput: big, ShadowOutput: []byte("short")})
	}
	s := tl.Summary()
	if len(s.Samples) != MaxSamples {
		t.Fatalf("kept %d samples, want %d", len(s.Samples), MaxSamples)
	}
	late := 0
	for _, sm := range s.Samples {
		if n := len(sm.Input) + len(sm.Primary) + len(sm.Shadow); n > MaxSampleBytes {
			t.Errorf("sample of %d bytes, more than %d", n, MaxSampleBytes)
		}
		if sm.Shadow != "short" || !strings.HasSuffix(sm.Input, "more bytes)") {
			t.Errorf("sample cut wrongly: shadow %q, input ends %q", sm.Shadow, sm.Input[len(sm.Input)-20:])
		}
		if sm.Diff.Index >= 100 {
			late++
		}
	}
	// Each of 1000 disagreements is kept with probability 5/1000; keeping
	// only the first 100 would be a reservoir that never replaces.
	if late == 0 {
		t.Errorf("all samples are from the first 100 disagreements: %+v", s.Samples)
	}
}

func TestFit(t *testing.T) {
	tests := []struct {
		name   string
		parts  [3]string
		budget int
		want   [3]string
	}{
		{"all fit", [3]string{"in", "p", "s"}, 100, [3]string{"in", "p", "s"}},
		{"the long one takes what the short ones leave",
			[3]string{strings.Repeat("a", 100), "p", "s"}, 60,
			[3]string{strings.Repeat("a", 39) + "…(61 more bytes)", "p", "s"}},
		{"even shares", [3]string{strings.Repeat("a", 100), strings.Repeat("b", 100), strings.Repeat("c", 100)}, 90,
			[3]string{strings.Repeat("a", 11) + "…(89 more bytes)", strings.Repeat("b", 11) + "…(89 more bytes)", strings.Repeat("c", 13) + "…(87 more bytes)"}},
		{"on a character boundary", [3]string{strings.Repeat("é", 50), "", ""}, 30,
			[3]string{strings.Repeat("é", 5) + "…(90 more bytes)", "", ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := fit([3][]byte{[]byte(tc.parts[0]), []byte(tc.parts[1]), []byte(tc.parts[2])}, tc.budget)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("fit (-want +got):\n%s", diff)
			}
			n := 0
			for _, p := range got {
				n += len(p)
				if !utf8.ValidString(p) {
					t.Errorf("part %q is not valid UTF-8", p)
				}
			}
			if n > tc.budget {
				t.Errorf("parts take %d bytes, more than %d", n, tc.budget)
			}
		})
	}
}

func TestVerdict(t *testing.T) {
	tests := []struct {
		name         string
		s            Summary
		minCompared  int
		minAgreement float64
		want         Verdict
	}{
		{"nothing compared", Summary{}, 100, 0.99, Verdict{Pending, "judged 0 of 100 requests"}},
		{"nothing compared and no minimum", Summary{}, 0, 0, Verdict{Pending, "judged 0 of 1 requests"}},
		{"too few", Summary{Compared: 7, Agreed: 7, Agreement: 1}, 100, 0.99, Verdict{Pending, "judged 7 of 100 requests"}},
		{"identical shadow", Summary{Compared: 100, Agreed: 100, Agreement: 1}, 100, 1, Verdict{Pass, "agreement 100.0% ≥ 100.0% over 100 requests"}},
		{"just enough", Summary{Compared: 100, Agreed: 99, Agreement: 0.99}, 100, 0.99, Verdict{Pass, "agreement 99.0% ≥ 99.0% over 100 requests"}},
		{"changed shadow", Summary{Compared: 120, Agreed: 60, Agreement: 0.5}, 100, 0.99, Verdict{Fail, "agreement 50.0% < 99.0% over 120 requests"}},
		{"with its noise floor", Summary{Compared: 200, Agreed: 190, Agreement: 0.95, NoiseCompared: 50, NoiseAgreement: 0.96}, 100, 0.99,
			Verdict{Fail, "agreement 95.0% < 99.0% over 200 requests; the primary agrees with itself 96.0% over 50 requests"}},
		{"shadow errors count against it", Summary{Compared: 95, Agreed: 95, Agreement: 1, ShadowErrors: 5}, 100, 0.99,
			Verdict{Fail, "agreement 95.0% < 99.0% over 100 requests, of which 5 shadow errors counted as disagreements"}},
		{"a shadow that only fails fails", Summary{ShadowErrors: 100}, 100, 0.5,
			Verdict{Fail, "agreement 0.0% < 50.0% over 100 requests, of which 100 shadow errors counted as disagreements"}},
		{"close agreements are told apart", Summary{Compared: 10000, Agreed: 9899}, 100, 0.99,
			Verdict{Fail, "agreement 98.99% < 99.00% over 10000 requests"}},
		{"NaN criterion", Summary{Compared: 100, Agreed: 100, Agreement: 1}, 100, math.NaN(),
			Verdict{Pending, "min agreement NaN is outside 0..1; give a fraction, e.g. 0.99"}},
		{"percent criterion", Summary{Compared: 100, Agreed: 100, Agreement: 1}, 100, 99,
			Verdict{Pending, "min agreement 99 is outside 0..1; give a fraction, e.g. 0.99"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.s.Verdict(tc.minCompared, tc.minAgreement)); diff != "" {
				t.Errorf("Verdict (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTallyIsSafeForConcurrentUse(t *testing.T) {
	var tl Tally
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				r := agree
				if i%10 == 0 {
					r = differ(i)
				}
				tl.Add(Pair{Result: r, PrimaryLatency: time.Millisecond, ShadowLatency: time.Millisecond, Input: []byte{byte(g)}})
				tl.Noise(agree)
				if i%50 == 0 {
					tl.ShadowError(nil)
					tl.Drop()
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			tl.Verdict(100, 0.9)
		}
	})
	wg.Wait()
	s := tl.Summary()
	got := []int64{s.Compared, s.Agreed, s.ShadowErrors, s.Dropped, s.NoiseCompared, int64(len(s.Samples))}
	if diff := cmp.Diff([]int64{2000, 1800, 40, 40, 2000, MaxSamples}, got); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if s.LatencyRatio != 1 {
		t.Errorf("LatencyRatio = %v, want 1", s.LatencyRatio)
	}
}
