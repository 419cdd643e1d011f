package monitor

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
)

// Kind is how a feature is binned.
type Kind string

// Feature kinds.
const (
	// Numeric features are float64 values, binned at reference quantiles.
	Numeric Kind = "numeric"
	// Categorical features are strings, binned by value with an "other"
	// bucket.
	Categorical Kind = "categorical"
)

// OtherValue names the bucket of a categorical feature that holds every
// value outside Feature.Values.
const OtherValue = "(other)"

// ProfileVersion is the Profile.Version this package writes and reads.
const ProfileVersion = 1

// Spec names one column of the rows a profile is built from and observed
// with.
type Spec struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Output marks a model output (a prediction) rather than an input.
	Output bool `json:"output,omitempty"`
}

// Row is one observation. Num holds the numeric columns' values in the
// order of the profile's numeric features; Cat the categorical columns'
// in the order of its categorical features. A NaN number is missing: it
// is counted as such and left out of the distribution.
type Row struct {
	Num []float64
	Cat []string
}

// Feature is the reference distribution of one column.
type Feature struct {
	Spec
	// Edges are a numeric feature's interior bin edges, strictly
	// increasing: bin 0 is (-inf, Edges[0]], bin i is (Edges[i-1],
	// Edges[i]], the last is (Edges[len-1], +inf).
	Edges []float64 `json:"edges,omitempty"`
	// Values are a categorical feature's own buckets; the last bucket
	// (OtherValue) holds every other value.
	Values []string `json:"values,omitempty"`
	// Probs is the reference share of each bin: len(Edges)+1 of them for a
	// numeric feature, len(Values)+1 for a categorical one. They sum to 1
	// (all zero when the sample had no value).
	Probs []float64 `json:"probs"`
	// Count is the number of non-missing reference values; Missing the
	// number of missing ones.
	Count   int `json:"count"`
	Missing int `json:"missing,omitempty"`
	// Mean and Std are a numeric feature's reference mean and (population)
	// standard deviation; Min and Max its range.
	Mean float64 `json:"mean,omitempty"`
	Std  float64 `json:"std,omitempty"`
	Min  float64 `json:"min,omitempty"`
	Max  float64 `json:"max,omitempty"`
}

// Bins returns the feature's number of bins.
func (f *Feature) Bins() int { return len(f.Probs) }

// Profile is the reference of every column, in the order of the specs it
// was built from. It is immutable once built; marshal it with
// encoding/json.
type Profile struct {
	Version  int       `json:"version"`
	Rows     int       `json:"rows"`
	Features []Feature `json:"features"`
}

// ProfileOptions shape BuildProfile's bins.
type ProfileOptions struct {
	// Bins is the number of quantile bins per numeric feature; default 20,
	// at most 1000. Ties in the sample can merge bins.
	Bins int
	// TopValues is the number of categorical values kept as buckets of
	// their own; default 20, at most 1000.
	TopValues int
}

func (o ProfileOptions) withDefaults() ProfileOptions {
	if o.Bins <= 0 {
		o.Bins = 20
	}
	if o.TopValues <= 0 {
		o.TopValues = 20
	}
	o.Bins = min(o.Bins, 1000)
	o.TopValues = min(o.TopValues, 1000)
	return o
}

// BuildProfile computes the reference profile of rows, whose columns are
// specs (numeric ones in Row.Num, categorical ones in Row.Cat, each in
// the order they appear in specs).
func BuildProfile(specs []Spec, rows []Row, opts ProfileOptions) (*Profile, error) {
	opts = opts.withDefaults()
	nNum, nCat, err := checkSpecs(specs)
	if err != nil {
		return nil, err
	}
	for i, r := range rows {
		if len(r.Num) != nNum || len(r.Cat) != nCat {
			return nil, fmt.Errorf("row %d has %d numbers and %d strings; the specs want %d and %d", i, len(r.Num), len(r.Cat), nNum, nCat)
		}
	}
	p := &Profile{Version: ProfileVersion, Rows: len(rows), Features: make([]Feature, len(specs))}
	ni, ci := 0, 0
	for i, s := range specs {
		if s.Kind == Numeric {
			p.Features[i] = numericFeature(s, rows, ni, opts.Bins)
			ni++
		} else {
			p.Features[i] = categoricalFeature(s, rows, ci, opts.TopValues)
			ci++
		}
	}
	return p, nil
}

func checkSpecs(specs []Spec) (nNum, nCat int, err error) {
	seen := make(map[string]bool, len(specs))
	for _, s := range specs {
		switch {
		case s.Name == "":
			return 0, 0, errors.New("a feature has no name")
		case seen[s.Name]:
			return 0, 0, fmt.Errorf("feature %q is named twice", s.Name)
		case s.Kind == Numeric:
			nNum++
		case s.Kind == Categorical:
			nCat++
		default:
			return 0, 0, fmt.Errorf("feature %q: kind %q is neither %q nor %q", s.Name, s.Kind, Numeric, Categorical)
		}
		seen[s.Name] = true
	}
	return nNum, nCat, nil
}

func numericFeature(s Spec, rows []Row, col, bins int) Feature {
	f := Feature{Spec: s}
	vals := make([]float64, 0, len(rows))
	for _, r := range rows {
		if v := r.Num[col]; math.IsNaN(v) {
			f.Missing++
		} else {
			vals = append(vals, v)
		}
	}
	f.Count = len(vals)
	if len(vals) == 0 {
		f.Probs = []float64{0}
		return f
	}
	slices.Sort(vals)
	f.Min, f.Max = vals[0], vals[len(vals)-1]
	var sum float64
	for _, v := range vals {
		sum += v
	}
	f.Mean = sum / float64(len(vals))
	var ss float64
	for _, v := range vals {
		ss += (v - f.Mean) * (v - f.Mean)
	}
	f.Std = math.Sqrt(ss / float64(len(vals)))
	// Edges at the k/bins quantiles; an edge equal to the previous one or to
	// the maximum would make an empty bin, so ties merge bins.
	for k := 1; k < bins; k++ {
		e := vals[(k*len(vals))/bins]
		if e >= f.Max || (len(f.Edges) > 0 && e <= f.Edges[len(f.Edges)-1]) {
			continue
		}
		f.Edges = append(f.Edges, e)
	}
	f.Probs = make([]float64, len(f.Edges)+1)
	for _, v := range vals {
		f.Probs[numBin(f.Edges, v)]++
	}
	for i := range f.Probs {
		f.Probs[i] /= float64(len(vals))
	}
	return f
}

func categoricalFeature(s Spec, rows []Row, col, top int) Feature {
	f := Feature{Spec: s}
	freq := make(map[string]int)
	for _, r := range rows {
		freq[r.Cat[col]]++
	}
	values := make([]string, 0, len(freq))
	for v := range freq {
		values = append(values, v)
	}
	// Most frequent first; ties by value so the profile is deterministic.
	sort.Slice(values, func(i, j int) bool {
		if freq[values[i]] != freq[values[j]] {
			return freq[values[i]] > freq[values[j]]
		}
		return values[i] < values[j]
	})
	if len(values) > top {
		values = values[:top]
	}
	f.Values = values
	f.Count = len(rows)
	f.Probs = make([]float64, len(values)+1)
	if len(rows) == 0 {
		return f
	}
	kept := 0
	for i, v := range values {
		f.Probs[i] = float64(freq[v]) / float64(len(rows))
		kept += freq[v]
	}
	f.Probs[len(values)] = float64(len(rows)-kept) / float64(len(rows))
	return f
}

// numBin returns the bin of v: the number of edges below v.
func numBin(edges []float64, v float64) int {
	lo, hi := 0, len(edges)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if edges[m] < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// Validate checks a profile read from storage: known version, unique names,
// known kinds, increasing edges and shares that match the bins.
func (p *Profile) Validate() error {
	if p.Version != ProfileVersion {
		return fmt.Errorf("profile version %d; this ebb reads version %d", p.Version, ProfileVersion)
	}
	specs := make([]Spec, len(p.Features))
	for i := range p.Features {
		specs[i] = p.Features[i].Spec
	}
	if _, _, err := checkSpecs(specs); err != nil {
		return err
	}
	for i := range p.Features {
		f := &p.Features[i]
		want := len(f.Values) + 1
		if f.Kind == Numeric {
			want = len(f.Edges) + 1
			if f.Values != nil {
				return fmt.Errorf("feature %q: a numeric feature has values", f.Name)
			}
			for j := 1; j < len(f.Edges); j++ {
				if !(f.Edges[j] > f.Edges[j-1]) {
					return fmt.Errorf("feature %q: edges are not strictly increasing at %d", f.Name, j)
				}
			}
		} else if f.Edges != nil {
			return fmt.Errorf("feature %q: a categorical feature has edges", f.Name)
		}
		if len(f.Probs) != want {
			return fmt.Errorf("feature %q: %d shares for %d bins", f.Name, len(f.Probs), want)
		}
		for _, q := range f.Probs {
			if q < 0 || q > 1 || math.IsNaN(q) {
				return fmt.Errorf("feature %q: share %v is not in [0, 1]", f.Name, q)
			}
		}
	}
	return nil
}
