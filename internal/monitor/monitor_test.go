package monitor

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"
)

// sampleNum returns n rows of one numeric column drawn by draw.
func sampleNum(n int, draw func(*rand.Rand) float64, seed uint64) []Row {
	r := rand.New(rand.NewPCG(seed, 1))
	rows := make([]Row, n)
	for i := range rows {
		rows[i] = Row{Num: []float64{draw(r)}}
	}
	return rows
}

func normal(mean, std float64) func(*rand.Rand) float64 {
	return func(r *rand.Rand) float64 { return mean + std*r.NormFloat64() }
}

// sampleCat returns n rows of one categorical column with the given
// weights.
func sampleCat(n int, values []string, weights []float64, seed uint64) []Row {
	r := rand.New(rand.NewPCG(seed, 2))
	var total float64
	for _, w := range weights {
		total += w
	}
	rows := make([]Row, n)
	for i := range rows {
		x := r.Float64() * total
		k := 0
		for ; k < len(weights)-1 && x >= weights[k]; k++ {
			x -= weights[k]
		}
		rows[i] = Row{Cat: []string{values[k]}}
	}
	return rows
}

func TestBuildProfile(t *testing.T) {
	uniform := make([]Row, 1000)
	for i := range uniform {
		uniform[i] = Row{Num: []float64{float64(i)}}
	}
	tests := []struct {
		name    string
		specs   []Spec
		rows    []Row
		opts    ProfileOptions
		want    Feature
		wantErr string
	}{{
		name:  "quantile edges split a uniform sample evenly",
		specs: []Spec{{Name: "x", Kind: Numeric}},
		rows:  uniform,
		opts:  ProfileOptions{Bins: 4},
		want: Feature{Spec: Spec{Name: "x", Kind: Numeric}, Edges: []float64{250, 500, 750},
			Probs: []float64{0.251, 0.25, 0.25, 0.249}, Count: 1000, Mean: 499.5, Std: math.Sqrt((1000*1000 - 1) / 12.0), Min: 0, Max: 999},
	}, {
		name:  "ties merge bins and NaN is missing",
		specs: []Spec{{Name: "x", Kind: Numeric}},
		rows:  []Row{{Num: []float64{1}}, {Num: []float64{1}}, {Num: []float64{1}}, {Num: []float64{2}}, {Num: []float64{math.NaN()}}},
		opts:  ProfileOptions{Bins: 4},
		want: Feature{Spec: Spec{Name: "x", Kind: Numeric}, Edges: []float64{1},
			Probs: []float64{0.75, 0.25}, Count: 4, Missing: 1, Mean: 1.25, Std: math.Sqrt(0.1875), Min: 1, Max: 2},
	}, {
		name:  "all missing",
		specs: []Spec{{Name: "x", Kind: Numeric, Output: true}},
		rows:  []Row{{Num: []float64{math.NaN()}}},
		want:  Feature{Spec: Spec{Name: "x", Kind: Numeric, Output: true}, Probs: []float64{0}, Missing: 1},
	}, {
		name:  "top values and other",
		specs: []Spec{{Name: "c", Kind: Categorical}},
		rows:  []Row{{Cat: []string{"a"}}, {Cat: []string{"b"}}, {Cat: []string{"a"}}, {Cat: []string{"c"}}, {Cat: []string{"b"}}, {Cat: []string{"a"}}, {Cat: []string{"d"}}, {Cat: []string{"e"}}},
		opts:  ProfileOptions{TopValues: 2},
		want: Feature{Spec: Spec{Name: "c", Kind: Categorical}, Values: []string{"a", "b"},
			Probs: []float64{3.0 / 8, 2.0 / 8, 3.0 / 8}, Count: 8},
	}, {
		name:    "duplicate name",
		specs:   []Spec{{Name: "x", Kind: Numeric}, {Name: "x", Kind: Categorical}},
		wantErr: `feature "x" is named twice`,
	}, {
		name:    "unknown kind",
		specs:   []Spec{{Name: "x", Kind: "text"}},
		wantErr: `kind "text"`,
	}, {
		name:    "row shape",
		specs:   []Spec{{Name: "x", Kind: Numeric}},
		rows:    []Row{{Num: []float64{1, 2}}},
		wantErr: "row 0 has 2 numbers",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := BuildProfile(tt.specs, tt.rows, tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			approx := cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-9 })
			if diff := cmp.Diff(tt.want, p.Features[0], approx); diff != "" {
				t.Errorf("feature (-want +got):\n%s", diff)
			}
			if err := p.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestProfileJSON(t *testing.T) {
	rows := sampleNum(500, normal(0, 1), 1)
	for i, c := range sampleCat(500, []string{"x", "y"}, []float64{1, 2}, 2) {
		rows[i].Cat = c.Cat
	}
	p, err := BuildProfile([]Spec{{Name: "n", Kind: Numeric}, {Name: "c", Kind: Categorical, Output: true}}, rows, ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var got Profile
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, &got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}

	for _, tt := range []struct {
		name    string
		edit    func(*Profile)
		wantErr string
	}{
		{"version", func(p *Profile) { p.Version = 2 }, "profile version 2"},
		{"edges out of order", func(p *Profile) { p.Features[0].Edges[1] = p.Features[0].Edges[0] }, "not strictly increasing"},
		{"shares for bins", func(p *Profile) { p.Features[1].Probs = p.Features[1].Probs[:1] }, "1 shares for 3 bins"},
		{"share range", func(p *Profile) { p.Features[0].Probs[0] = 2 }, "not in [0, 1]"},
		{"no name", func(p *Profile) { p.Features[0].Name = "" }, "no name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var q Profile
			if err := json.Unmarshal(b, &q); err != nil {
				t.Fatal(err)
			}
			tt.edit(&q)
			if err := q.Validate(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate = %v; want %q", err, tt.wantErr)
			}
		})
	}
}

// observeAll builds a profile from ref, observes cur in a fresh window and
// returns the report.
func observeAll(t *testing.T, specs []Spec, ref, cur []Row) Report {
	t.Helper()
	p, err := BuildProfile(specs, ref, ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWindow(p, WindowOptions{Clock: clocktesting.NewFakePassiveClock(time.Unix(1e9, 0))})
	for _, r := range cur {
		if err := w.Observe(r); err != nil {
			t.Fatal(err)
		}
	}
	return w.Report()
}

func TestDrift(t *testing.T) {
	num := []Spec{{Name: "x", Kind: Numeric}}
	cat := []Spec{{Name: "c", Kind: Categorical}}
	abc := []string{"a", "b", "c", "d"}
	tests := []struct {
		name           string
		specs          []Spec
		ref, cur       []Row
		psiMin, psiMax float64
		want           Status
	}{
		{"same normal", num, sampleNum(5000, normal(0, 1), 1), sampleNum(2000, normal(0, 1), 2), 0, 0.05, StatusOK},
		{"normal shifted by 0.5 sd", num, sampleNum(5000, normal(0, 1), 1), sampleNum(2000, normal(0.5, 1), 3), 0.2, math.Inf(1), StatusDrift},
		{"normal shifted by 1 sd", num, sampleNum(5000, normal(0, 1), 1), sampleNum(2000, normal(1, 1), 4), 0.8, math.Inf(1), StatusDrift},
		{"normal twice as wide", num, sampleNum(5000, normal(0, 1), 1), sampleNum(2000, normal(0, 2), 5), 0.25, math.Inf(1), StatusDrift},
		{"same categories", cat, sampleCat(5000, abc, []float64{4, 3, 2, 1}, 1), sampleCat(2000, abc, []float64{4, 3, 2, 1}, 2), 0, 0.02, StatusOK},
		{"categories reweighted", cat, sampleCat(5000, abc, []float64{4, 3, 2, 1}, 1), sampleCat(2000, abc, []float64{1, 2, 3, 4}, 3), 0.25, math.Inf(1), StatusDrift},
		{"a new category", cat, sampleCat(5000, abc[:3], []float64{1, 1, 1}, 1), sampleCat(2000, abc, []float64{1, 1, 1, 0.1}, 4), 0.05, math.Inf(1), StatusDrift},
		{"too few to judge", num, sampleNum(5000, normal(0, 1), 1), sampleNum(50, normal(3, 1), 6), 1, math.Inf(1), StatusUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := observeAll(t, tt.specs, tt.ref, tt.cur)
			f := r.Features[0]
			if f.PSI < tt.psiMin || f.PSI > tt.psiMax {
				t.Errorf("PSI = %.4f; want in [%v, %v]", f.PSI, tt.psiMin, tt.psiMax)
			}
			if f.Status != tt.want || r.Status != tt.want {
				t.Errorf("status = %v (report %v); want %v; score %+v", f.Status, r.Status, tt.want, f)
			}
			if r.Rows != uint64(len(tt.cur)) {
				t.Errorf("rows = %d; want %d", r.Rows, len(tt.cur))
			}
		})
	}
}

// A shifted feature is detected and an unshifted one beside it is not.
func TestDriftPerFeature(t *testing.T) {
	specs := []Spec{{Name: "stable", Kind: Numeric}, {Name: "shifted", Kind: Numeric}, {Name: "pred", Kind: Categorical, Output: true}}
	rng := rand.New(rand.NewPCG(7, 7))
	mk := func(n int, shift float64) []Row {
		rows := make([]Row, n)
		for i := range rows {
			y := "no"
			if rng.Float64() < 0.3 {
				y = "yes"
			}
			rows[i] = Row{Num: []float64{rng.NormFloat64(), shift + rng.NormFloat64()}, Cat: []string{y}}
		}
		return rows
	}
	r := observeAll(t, specs, mk(5000, 0), mk(3000, 0.6))
	got := map[string]Status{}
	for _, f := range r.Features {
		got[f.Feature] = f.Status
	}
	want := map[string]Status{"stable": StatusOK, "shifted": StatusDrift, "pred": StatusOK}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if s := r.Features[1].MeanShift; s < 0.5 || s > 0.7 {
		t.Errorf("mean shift = %.3f; want about 0.6", s)
	}
}

// directKS is the exact two-sample Kolmogorov–Smirnov statistic.
func directKS(a, b []float64) float64 {
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	var d float64
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		x := min(a[i], b[j])
		for i < len(a) && a[i] <= x {
			i++
		}
		for j < len(b) && b[j] <= x {
			j++
		}
		d = max(d, math.Abs(float64(i)/float64(len(a))-float64(j)/float64(len(b))))
	}
	return d
}

func TestKSMatchesDirect(t *testing.T) {
	exp := func(r *rand.Rand) float64 { return r.ExpFloat64() }
	round := func(r *rand.Rand) float64 { return math.Round(3 * r.NormFloat64()) }
	tests := []struct {
		name     string
		ref, cur []Row
		maxBound float64 // 1/20 with 20 quantile bins, more when ties merge bins
	}{
		{"same", sampleNum(4000, normal(0, 1), 1), sampleNum(1500, normal(0, 1), 2), 0.051},
		{"shifted", sampleNum(4000, normal(0, 1), 1), sampleNum(1500, normal(0.3, 1), 3), 0.051},
		{"narrower", sampleNum(4000, normal(0, 1), 1), sampleNum(1500, normal(0, 0.2), 4), 0.051},
		{"far away", sampleNum(4000, normal(0, 1), 1), sampleNum(1500, normal(10, 1), 5), 0.051},
		{"exponential vs normal", sampleNum(4000, exp, 6), sampleNum(1500, normal(1, 1), 7), 0.051},
		{"discrete with ties", sampleNum(4000, round, 8), sampleNum(1500, round, 9), 0.15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := observeAll(t, []Spec{{Name: "x", Kind: Numeric}}, tt.ref, tt.cur).Features[0]
			col := func(rows []Row) []float64 {
				v := make([]float64, len(rows))
				for i, r := range rows {
					v[i] = r.Num[0]
				}
				return v
			}
			d := directKS(col(tt.ref), col(tt.cur))
			if f.KS > d+1e-9 || d > f.KS+f.KSBound+1e-9 {
				t.Errorf("binned KS %.4f (bound %.4f); direct %.4f is outside [KS, KS+bound]", f.KS, f.KSBound, d)
			}
			if f.KSBound > tt.maxBound {
				t.Errorf("bound %.4f; want at most %v", f.KSBound, tt.maxBound)
			}
		})
	}
}

func TestChiSquaredP(t *testing.T) {
	// Critical values from the chi-squared table.
	for _, tt := range []struct {
		x    float64
		df   int
		want float64
	}{
		{3.841, 1, 0.05}, {6.635, 1, 0.01}, {5.991, 2, 0.05}, {18.307, 10, 0.05},
		{0.352, 3, 0.95}, {29.588, 10, 0.001}, {0, 4, 1}, {124.342, 100, 0.05},
	} {
		t.Run(fmt.Sprintf("%v/%d", tt.x, tt.df), func(t *testing.T) {
			got := ChiSquaredP(tt.x, tt.df)
			if math.Abs(got-tt.want) > 1e-3*math.Max(tt.want, 0.01) {
				t.Errorf("ChiSquaredP(%v, %d) = %.6f; want %v", tt.x, tt.df, got, tt.want)
			}
		})
	}
}

func TestWindowRotates(t *testing.T) {
	p, err := BuildProfile([]Spec{{Name: "x", Kind: Numeric}}, sampleNum(1000, normal(0, 1), 1), ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(start)
	w := NewWindow(p, WindowOptions{SubWindow: time.Minute, SubWindows: 3, Clock: clk})
	observe := func(n int, v float64) {
		for range n {
			if err := w.Observe(Row{Num: []float64{v}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []struct {
		advance  time.Duration
		add      int
		wantRows uint64
		wantFrom time.Time
	}{
		{0, 10, 10, start.Add(-2 * time.Minute)},
		{30 * time.Second, 5, 15, start.Add(-2 * time.Minute)}, // same sub-window
		{time.Minute, 7, 22, start.Add(-time.Minute)},          // second sub-window
		{time.Minute, 0, 22, start},                            // third
		{time.Minute, 1, 8, start.Add(time.Minute)},            // the first (15) fell out
		{10 * time.Minute, 0, 0, start.Add(11 * time.Minute)},  // everything fell out
		{0, 2, 2, start.Add(11 * time.Minute)},                 // a reused slot starts empty
	}
	for i, s := range steps {
		clk.SetTime(clk.Now().Add(s.advance))
		observe(s.add, 0.5)
		r := w.Report()
		if r.Rows != s.wantRows || r.Features[0].Count != s.wantRows {
			t.Errorf("step %d: rows %d, count %d; want %d", i, r.Rows, r.Features[0].Count, s.wantRows)
		}
		if !r.From.Equal(s.wantFrom) {
			t.Errorf("step %d: from %v; want %v", i, r.From, s.wantFrom)
		}
	}
}

func TestMonitor(t *testing.T) {
	p, err := BuildProfile([]Spec{{Name: "x", Kind: Numeric}}, sampleNum(100, normal(0, 1), 1), ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMonitor(WindowOptions{})
	if ok, err := m.Observe("d", "1", Row{Num: []float64{1}}); ok || err != nil {
		t.Errorf("Observe without a profile = %v, %v; want false, nil", ok, err)
	}
	m.Set("d", "1", p)
	if ok, err := m.Observe("d", "1", Row{Num: []float64{1}}); !ok || err != nil {
		t.Errorf("Observe = %v, %v; want true, nil", ok, err)
	}
	if _, err := m.Observe("d", "1", Row{Num: []float64{1, 2}}); err != ErrRowShape {
		t.Errorf("Observe of a wide row = %v; want ErrRowShape", err)
	}
	if got := m.Window("d", "1").Report().Rows; got != 1 {
		t.Errorf("rows = %d; want 1", got)
	}
	m.Remove("d", "1")
	if m.Window("d", "1") != nil {
		t.Error("window still there after Remove")
	}
}

// wideWindow returns a window over n features, half numeric and half
// categorical, and a row that fits it.
func wideWindow(tb testing.TB, n int) (*Window, Row) {
	tb.Helper()
	var specs []Spec
	rng := rand.New(rand.NewPCG(1, 2))
	ref := make([]Row, 2000)
	for i := range n {
		kind := Numeric
		if i%2 == 1 {
			kind = Categorical
		}
		specs = append(specs, Spec{Name: fmt.Sprintf("f%d", i), Kind: kind})
	}
	cats := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for r := range ref {
		for _, s := range specs {
			if s.Kind == Numeric {
				ref[r].Num = append(ref[r].Num, rng.NormFloat64())
			} else {
				ref[r].Cat = append(ref[r].Cat, cats[rng.IntN(len(cats))])
			}
		}
	}
	p, err := BuildProfile(specs, ref, ProfileOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return NewWindow(p, WindowOptions{}), ref[0]
}

func TestObserveDoesNotAllocate(t *testing.T) {
	for _, n := range []int{10, 100} {
		w, row := wideWindow(t, n)
		if a := testing.AllocsPerRun(100, func() { _ = w.Observe(row) }); a != 0 {
			t.Errorf("%d features: %v allocations per Observe; want 0", n, a)
		}
	}
}

func BenchmarkObserve(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("features=%d", n), func(b *testing.B) {
			w, row := wideWindow(b, n)
			b.ReportAllocs()
			for b.Loop() {
				_ = w.Observe(row)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/feature")
		})
	}
}
