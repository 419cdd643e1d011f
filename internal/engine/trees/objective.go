package trees

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// link is the transformation from a row's summed margins to its outputs.
type link int

const (
	linkIdentity link = iota // output = margin
	linkSigmoid              // output = 1 / (1 + exp(-margin))
	linkExp                  // output = exp(margin)
	linkHinge                // output = 1 if margin > 0 else 0
	linkSoftprob             // outputs = softmax(margins), one per class
	linkSoftmax              // output = index of the largest margin
)

// margin says how base_score, stored in output space, becomes the starting
// margin, as the objective's ProbToMargin does in xgboost.
type margin int

const (
	marginIdentity margin = iota
	marginLogit           // -log(1/p - 1), for p in (0, 1)
	marginLog             // log(p), for p > 0
)

type objective struct {
	margin margin
	link   link
}

// objectives lists every objective Predict reproduces exactly.
var objectives = map[string]objective{
	"reg:squarederror":     {marginIdentity, linkIdentity},
	"reg:linear":           {marginIdentity, linkIdentity},
	"reg:squaredlogerror":  {marginIdentity, linkIdentity},
	"reg:pseudohubererror": {marginIdentity, linkIdentity},
	"reg:absoluteerror":    {marginIdentity, linkIdentity},
	"reg:logistic":         {marginLogit, linkSigmoid},
	"binary:logistic":      {marginLogit, linkSigmoid},
	"binary:logitraw":      {marginIdentity, linkIdentity}, // base_score is a margin already (checked against 1.7.4)
	"binary:hinge":         {marginIdentity, linkHinge},
	"count:poisson":        {marginLog, linkExp},
	"reg:gamma":            {marginLog, linkExp},
	"reg:tweedie":          {marginLog, linkExp},
	"survival:cox":         {marginLog, linkExp},
	"multi:softprob":       {marginIdentity, linkSoftprob},
	"multi:softmax":        {marginIdentity, linkSoftmax},
	"rank:pairwise":        {marginIdentity, linkIdentity},
	"rank:ndcg":            {marginIdentity, linkIdentity},
	"rank:map":             {marginIdentity, linkIdentity},
}

// Objectives returns the names of the XGBoost objectives this engine
// supports, sorted.
func Objectives() []string {
	names := make([]string, 0, len(objectives))
	for n := range objectives {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func lookupObjective(name string) (objective, error) {
	if name == "" {
		return objective{}, fmt.Errorf("missing field learner.objective.name")
	}
	o, ok := objectives[name]
	if !ok {
		return objective{}, fmt.Errorf("unsupported objective %q: the trees engine supports %s", name, strings.Join(Objectives(), ", "))
	}
	return o, nil
}

// toMargin turns base_score into the starting margin in float32, as xgboost
// does (-logf(1/p - 1) or logf(p)).
func (m margin) toMargin(p float32) (float32, error) {
	switch m {
	case marginLogit:
		if !(p > 0 && p < 1) {
			return 0, fmt.Errorf("base_score is %v but a logistic objective needs it in (0, 1)", p)
		}
		return -logf(1/p - 1), nil
	case marginLog:
		if !(p > 0) {
			return 0, fmt.Errorf("base_score is %v but this objective needs it above 0", p)
		}
		return logf(p), nil
	default:
		return p, nil
	}
}

func logf(x float32) float32 { return float32(math.Log(float64(x))) }
func expf(x float32) float32 { return float32(math.Exp(float64(x))) }

// apply turns one row's margins into its outputs, written to out: len(out) is
// len(margins) for linkSoftprob and 1 for linkSoftmax, else equal to
// len(margins). It follows xgboost's float32 arithmetic.
func (l link) apply(margins, out []float32) {
	switch l {
	case linkSigmoid:
		for i, x := range margins {
			out[i] = 1 / (1 + expf(-x))
		}
	case linkExp:
		for i, x := range margins {
			out[i] = expf(x)
		}
	case linkHinge:
		for i, x := range margins {
			if x > 0 {
				out[i] = 1
			} else {
				out[i] = 0
			}
		}
	case linkSoftprob:
		// common::Softmax: max in float, exponentials in float summed in
		// double, each divided by the sum rounded to float.
		wmax := margins[0]
		for _, x := range margins[1:] {
			wmax = max(wmax, x)
		}
		var wsum float64
		for i, x := range margins {
			out[i] = expf(x - wmax)
			wsum += float64(out[i])
		}
		s := float32(wsum)
		for i := range out[:len(margins)] {
			out[i] /= s
		}
	case linkSoftmax:
		best := 0
		for i, x := range margins {
			if x > margins[best] {
				best = i
			}
		}
		out[0] = float32(best)
	default:
		copy(out, margins)
	}
}
