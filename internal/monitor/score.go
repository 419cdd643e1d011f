package monitor

import (
	"math"
	"time"
)

// Status is a feature's (or a window's) drift verdict; a larger Status is
// worse.
type Status int

// Statuses, from best to worst.
const (
	// StatusUnknown means too few observations to judge
	// (Thresholds.MinCount).
	StatusUnknown Status = iota
	// StatusOK means no test passed its warn threshold.
	StatusOK
	// StatusWarn means a test passed its warn threshold.
	StatusWarn
	// StatusDrift means a test passed its drift threshold.
	StatusDrift
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusWarn:
		return "warn"
	case StatusDrift:
		return "drift"
	}
	return "unknown"
}

// MarshalText writes the status as its name.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Thresholds turn drift scores into a Status. A test whose two thresholds
// are zero is not used for the status (it is still reported).
type Thresholds struct {
	// MinCount is the fewest non-missing values a feature's window needs
	// before it is judged; fewer give StatusUnknown.
	MinCount uint64
	// PSIWarn and PSIDrift bound the population stability index (every
	// feature).
	PSIWarn, PSIDrift float64
	// KSWarn and KSDrift bound the binned KS statistic (numeric features).
	KSWarn, KSDrift float64
	// ChiPWarn and ChiPDrift bound the chi-squared test's p-value from
	// below (categorical features): a p-value under ChiPDrift is drift.
	ChiPWarn, ChiPDrift float64
}

// DefaultThresholds are the usual PSI bands (0.1 some change, 0.25 a
// significant one), KS gaps of 0.1 and 0.2, and chi-squared p-values
// small enough (1e-3, 1e-6) that large windows do not flag noise, judged
// from 100 values on.
var DefaultThresholds = Thresholds{
	MinCount: 100,
	PSIWarn:  0.1, PSIDrift: 0.25,
	KSWarn: 0.1, KSDrift: 0.2,
	ChiPWarn: 1e-3, ChiPDrift: 1e-6,
}

// psiFloor stands in for an empty bin's share so PSI stays finite.
const psiFloor = 1e-4

// FeatureScore is one feature's window against its reference.
type FeatureScore struct {
	Feature string `json:"feature"`
	Kind    Kind   `json:"kind"`
	Output  bool   `json:"output,omitempty"`
	// Count is the window's non-missing values; Missing its missing ones.
	Count   uint64 `json:"count"`
	Missing uint64 `json:"missing,omitempty"`
	// Shares are the window's share per bin (nil when Count is 0).
	Shares []float64 `json:"shares,omitempty"`
	// PSI is the population stability index Σ (q-p)·ln(q/p) over the
	// bins, with empty shares floored at 1e-4.
	PSI float64 `json:"psi"`
	// KS is the largest gap between the reference and window CDFs at the
	// bin edges (numeric features); the exact two-sample statistic lies in
	// [KS, KS+KSBound].
	KS      float64 `json:"ks,omitempty"`
	KSBound float64 `json:"ks_bound,omitempty"`
	// Mean is the window's mean and MeanShift its distance from the
	// reference mean in reference standard deviations (numeric features;
	// 0 when the reference has no spread).
	Mean      float64 `json:"mean,omitempty"`
	MeanShift float64 `json:"mean_shift,omitempty"`
	// Chi2, Chi2DF and Chi2P are Pearson's chi-squared statistic, its
	// degrees of freedom and p-value (categorical features).
	Chi2   float64 `json:"chi2,omitempty"`
	Chi2DF int     `json:"chi2_df,omitempty"`
	Chi2P  float64 `json:"chi2_p,omitempty"`
	Status Status  `json:"status"`
}

// Report is a window's scores at one time.
type Report struct {
	// From and To bound the window: the start of its oldest live
	// sub-window and now.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Rows is the number of rows observed in the window.
	Rows     uint64         `json:"rows"`
	Features []FeatureScore `json:"features"`
	// Status is the worst of the features' that could be judged;
	// StatusUnknown when none could.
	Status Status `json:"status"`
}

func score(f *Feature, c *Counts, th Thresholds) FeatureScore {
	fs := FeatureScore{Feature: f.Name, Kind: f.Kind, Output: f.Output, Missing: c.Missing}
	for _, n := range c.Bins {
		fs.Count += n
	}
	if fs.Count == 0 {
		fs.Status = StatusUnknown
		return fs
	}
	m := float64(fs.Count)
	fs.Shares = make([]float64, len(c.Bins))
	for i, n := range c.Bins {
		fs.Shares[i] = float64(n) / m
	}
	fs.PSI = PSI(f.Probs, fs.Shares)
	st := StatusOK
	st = max(st, above(fs.PSI, th.PSIWarn, th.PSIDrift))
	if f.Kind == Numeric {
		fs.KS, fs.KSBound = BinnedKS(f.Probs, fs.Shares)
		fs.Mean = c.Sum / m
		if f.Std > 0 {
			fs.MeanShift = (fs.Mean - f.Mean) / f.Std
		}
		st = max(st, above(fs.KS, th.KSWarn, th.KSDrift))
	} else {
		fs.Chi2, fs.Chi2DF = ChiSquared(f.Probs, c.Bins)
		fs.Chi2P = ChiSquaredP(fs.Chi2, fs.Chi2DF)
		if th.ChiPWarn != 0 || th.ChiPDrift != 0 {
			switch {
			case fs.Chi2P < th.ChiPDrift:
				st = max(st, StatusDrift)
			case fs.Chi2P < th.ChiPWarn:
				st = max(st, StatusWarn)
			}
		}
	}
	if fs.Count < th.MinCount {
		st = StatusUnknown
	}
	fs.Status = st
	return fs
}

// above grades v against a warn and a drift threshold; zero ones are off.
func above(v, warn, drift float64) Status {
	switch {
	case drift > 0 && v >= drift:
		return StatusDrift
	case warn > 0 && v >= warn:
		return StatusWarn
	}
	return StatusOK
}

// PSI returns the population stability index of shares q against
// reference shares p (same bins): Σ (q-p)·ln(q/p), with a share under
// 1e-4 taken as 1e-4.
func PSI(p, q []float64) float64 {
	var s float64
	for i := range p {
		a, b := max(p[i], psiFloor), max(q[i], psiFloor)
		s += (b - a) * math.Log(b/a)
	}
	return s
}

// BinnedKS returns the largest gap between the CDFs of shares p and q at
// the bin edges, and the bound on how far the exact statistic can lie
// above it: max over bins of min(p, q).
func BinnedKS(p, q []float64) (ks, bound float64) {
	var cp, cq float64
	for i := range p {
		bound = max(bound, min(p[i], q[i]))
		if i == len(p)-1 {
			break // both CDFs are 1 after the last bin
		}
		cp += p[i]
		cq += q[i]
		ks = max(ks, math.Abs(cp-cq))
	}
	return ks, bound
}

// ChiSquared returns Pearson's statistic for observed counts against
// reference shares p, and its degrees of freedom. A bin the reference
// never saw counts with a share of 1e-4, so a new category weighs
// heavily; a bin neither saw is left out.
func ChiSquared(p []float64, observed []uint64) (chi2 float64, df int) {
	var m float64
	for _, o := range observed {
		m += float64(o)
	}
	bins := 0
	for i := range p {
		if p[i] == 0 && observed[i] == 0 {
			continue
		}
		bins++
		e := m * max(p[i], psiFloor)
		d := float64(observed[i]) - e
		chi2 += d * d / e
	}
	return chi2, max(bins-1, 1)
}

// ChiSquaredP returns the probability that a chi-squared variable with df
// degrees of freedom is at least x: the regularized upper incomplete gamma
// function Q(df/2, x/2).
func ChiSquaredP(x float64, df int) float64 {
	if x <= 0 || df <= 0 {
		return 1
	}
	return gammaQ(float64(df)/2, x/2)
}

// gammaQ is the regularized upper incomplete gamma function, by its series
// below a+1 and its continued fraction (modified Lentz) above.
func gammaQ(a, x float64) float64 {
	lg, _ := math.Lgamma(a)
	if x < a+1 {
		sum, term := 1/a, 1/a
		for n := 1; n < 500; n++ {
			term *= x / (a + float64(n))
			sum += term
			if math.Abs(term) < math.Abs(sum)*1e-15 {
				break
			}
		}
		return max(0, 1-sum*math.Exp(-x+a*math.Log(x)-lg))
	}
	const tiny = 1e-300
	b := x + 1 - a
	c := 1 / tiny
	d := 1 / b
	h := d
	for i := 1; i < 500; i++ {
		an := -float64(i) * (float64(i) - a)
		b += 2
		d = an*d + b
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = b + an/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		del := d * c
		h *= del
		if math.Abs(del-1) < 1e-15 {
			break
		}
	}
	return math.Exp(-x+a*math.Log(x)-lg) * h
}
