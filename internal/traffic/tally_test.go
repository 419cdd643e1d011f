package traffic

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
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

// TestSnapshotTravels checks that a Tally's snapshot survives JSON and
// summarises to the Tally's own Summary.
func TestSnapshotTravels(t *testing.T) {
	var tl Tally
	tl.Add(Pair{Result: agree, PrimaryLatency: 10 * time.Millisecond, ShadowLatency: 15 * time.Millisecond})
	tl.Add(Pair{Result: differ(3), PrimaryLatency: 10 * time.Millisecond, ShadowLatency: 25 * time.Millisecond,
		Input: []byte(`{"inputs":[3]}`), PrimaryOutput: []byte("p\xff"), ShadowOutput: []byte("s")})
	tl.ShadowError(errors.New("503 Service Unavailable"))
	tl.Drop()
	tl.Noise(agree)
	tl.Noise(differ(0))
	snap := tl.Snapshot()
	if err := snap.Check(); err != nil {
		t.Fatalf("a Tally's own snapshot fails its check: %v", err)
	}
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	var back TallySnapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	want := tl.Summary()
	want.Samples[0].Primary = "p\ufffd" // JSON carries text
	if diff := cmp.Diff(want, back.Summary()); diff != "" {
		t.Errorf("summary of the snapshot after JSON (-Tally's +snapshot's):\n%s\nJSON: %s", diff, b)
	}
	if back.LastErrorAt.IsZero() || !back.LastErrorAt.Equal(snap.LastErrorAt) {
		t.Errorf("last error at %v after JSON; want %v", back.LastErrorAt, snap.LastErrorAt)
	}
}

func TestMergeSnapshots(t *testing.T) {
	t1 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sample := func(i int) Sample { return Sample{Input: fmt.Sprint(i), Primary: "p", Shadow: "s", Diff: differ(i)} }
	samples := func(is ...int) []Sample {
		var out []Sample
		for _, i := range is {
			out = append(out, sample(i))
		}
		return out
	}
	a := TallySnapshot{Compared: 100, Agreed: 97, ShadowErrors: 2, LastError: "503", LastErrorAt: t1, Dropped: 1,
		PrimaryLatency: time.Second, ShadowLatency: 2 * time.Second, NoiseCompared: 50, NoiseAgreed: 50, Samples: samples(1, 2, 3)}
	b := TallySnapshot{Compared: 300, Agreed: 300, ShadowErrors: 1, LastError: "timeout", LastErrorAt: t1.Add(time.Minute),
		PrimaryLatency: 3 * time.Second, ShadowLatency: 2 * time.Second, NoiseCompared: 50, NoiseAgreed: 40}
	c := TallySnapshot{Compared: 10, Agreed: 6, Samples: samples(11, 12, 13, 14)}
	tests := []struct {
		name  string
		snaps []TallySnapshot
		want  Summary
	}{
		{"none", nil, Summary{}},
		{"one is its own summary", []TallySnapshot{a}, a.Summary()},
		{"counts and latency sums add; the latest error wins", []TallySnapshot{a, b}, Summary{
			Compared: 400, Agreed: 397, Agreement: 397.0 / 400, ShadowErrors: 3, LastShadowError: "timeout", Dropped: 1,
			LatencyRatio: 1, NoiseCompared: 100, NoiseAgreement: 0.9, Samples: samples(1, 2, 3)}},
		{"the latest error wins whatever the order", []TallySnapshot{b, a}, Summary{
			Compared: 400, Agreed: 397, Agreement: 397.0 / 400, ShadowErrors: 3, LastShadowError: "timeout", Dropped: 1,
			LatencyRatio: 1, NoiseCompared: 100, NoiseAgreement: 0.9, Samples: samples(1, 2, 3)}},
		{"samples in turn, capped", []TallySnapshot{a, b, c}, Summary{
			Compared: 410, Agreed: 403, Agreement: 403.0 / 410, ShadowErrors: 3, LastShadowError: "timeout", Dropped: 1,
			LatencyRatio: 1, NoiseCompared: 100, NoiseAgreement: 0.9, Samples: samples(1, 11, 2, 12, 3)}},
		{"nothing compared has no ratio", []TallySnapshot{{Dropped: 4}, {ShadowErrors: 2, LastError: "refused"}}, Summary{
			ShadowErrors: 2, LastShadowError: "refused", Dropped: 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := SumSnapshots(tc.snaps...)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
				t.Errorf("SumSnapshots (-want +got):\n%s", diff)
			}
			if len(tc.snaps) > 0 {
				if err := MergeSnapshots(tc.snaps...).Check(); err != nil {
					t.Errorf("the merged snapshot fails its check: %v", err)
				}
			}
		})
	}
}

// TestMergedSnapshotsCountAsOneTally splits one stream of mirrored
// requests over three gateways and checks that their merged snapshots
// count what one Tally that saw every request counts.
func TestMergedSnapshotsCountAsOneTally(t *testing.T) {
	var all Tally
	gws := make([]Tally, 3)
	for i := range 900 {
		r := agree
		if i%7 == 0 {
			r = differ(i)
		}
		p := Pair{Result: r, PrimaryLatency: time.Duration(1+i%5) * time.Millisecond, ShadowLatency: time.Duration(2+i%3) * time.Millisecond}
		all.Add(p)
		gws[i%3].Add(p)
		if i%11 == 0 {
			all.Noise(r)
			gws[(i+1)%3].Noise(r)
		}
	}
	got := SumSnapshots(gws[0].Snapshot(), gws[1].Snapshot(), gws[2].Snapshot())
	want := all.Summary()
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-12), cmpopts.IgnoreFields(Summary{}, "Samples")); diff != "" {
		t.Errorf("merged (-one Tally +three):\n%s", diff)
	}
	if len(got.Samples) != MaxSamples {
		t.Errorf("merged %d samples; want %d", len(got.Samples), MaxSamples)
	}
}

func TestTallySnapshotCheck(t *testing.T) {
	ok := TallySnapshot{Compared: 3, Agreed: 1, Samples: []Sample{{Input: "x"}, {Input: "y"}}}
	tests := []struct {
		name string
		edit func(*TallySnapshot)
		want string
	}{
		{"valid", func(*TallySnapshot) {}, ""},
		{"zero", func(s *TallySnapshot) { *s = TallySnapshot{} }, ""},
		{"negative", func(s *TallySnapshot) { s.Dropped = -1 }, "dropped is -1"},
		{"negative latency", func(s *TallySnapshot) { s.ShadowLatency = -time.Second }, "shadowLatencyNs is"},
		{"more agreed than compared", func(s *TallySnapshot) { s.Agreed, s.Samples = 4, nil }, "4 agreed of 3 compared"},
		{"noise", func(s *TallySnapshot) { s.NoiseAgreed = 1 }, "noise floor: 1 agreed of 0"},
		{"more samples than disagreements", func(s *TallySnapshot) { s.Agreed = 2 }, "2 samples of 1 disagreements"},
		{"too many samples", func(s *TallySnapshot) { s.Compared, s.Samples = 100, make([]Sample, MaxSamples+1) }, "more than 5"},
		{"sample too big", func(s *TallySnapshot) { s.Samples[1].Shadow = strings.Repeat("x", 3*MaxSampleBytes) }, "sample 1 has"},
		{"error too long", func(s *TallySnapshot) { s.LastError = strings.Repeat("x", 4*maxErrorBytes) }, "last error of"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			s.Samples = slices.Clone(ok.Samples)
			tc.edit(&s)
			err := s.Check()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Check = %v; want %q", err, tc.want)
			}
		})
	}
}
