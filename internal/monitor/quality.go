package monitor

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Prediction is what a label join needs of one logged prediction: which
// deployment and version made it, its key (the request id, or for row i
// of a batch "id:i"), and the predicted value, a number or a class.
type Prediction struct {
	Key        string  `json:"key"`
	Deployment string  `json:"deployment"`
	Version    string  `json:"version"`
	Num        float64 `json:"num,omitempty"`
	Str        string  `json:"str,omitempty"`
	IsStr      bool    `json:"isStr,omitempty"`
}

// Value returns the prediction as text.
func (p Prediction) Value() string {
	if p.IsStr {
		return p.Str
	}
	return strconv.FormatFloat(p.Num, 'g', -1, 64)
}

// Label is the true outcome of one prediction, known later.
type Label struct {
	// Key is the prediction's request id ("id:i" for row i of a batch).
	Key   string `json:"requestId"`
	Value string `json:"label"`
}

// Task says how predictions are scored against labels.
type Task string

// Tasks.
const (
	// TaskAuto is regression when every matched label and prediction is
	// a number, else classification.
	TaskAuto Task = ""
	// TaskClassification scores accuracy: the share of predictions equal
	// to their label (numbers compared as numbers).
	TaskClassification Task = "classification"
	// TaskRegression scores the mean absolute and root mean squared
	// errors.
	TaskRegression Task = "regression"
)

// Quality is how one version's predictions did against their labels.
type Quality struct {
	Version string `json:"version"`
	// Matched counts the labels joined with a prediction of the version.
	Matched int  `json:"matched"`
	Task    Task `json:"task"`
	// Accuracy is set for classification; MAE and RMSE for regression.
	Accuracy *float64 `json:"accuracy,omitempty"`
	MAE      *float64 `json:"mae,omitempty"`
	RMSE     *float64 `json:"rmse,omitempty"`
}

// QualityReport is the result of joining labels with a deployment's
// logged predictions: the quality of each version that made a matched
// prediction.
type QualityReport struct {
	Deployment string `json:"deployment"`
	Labels     int    `json:"labels"`
	// Unmatched counts labels with no logged prediction (never sampled,
	// forgotten, or another deployment's).
	Unmatched int       `json:"unmatched"`
	Versions  []Quality `json:"versions"`
}

// JoinLabels scores deployment's predictions, found by lookup, against
// labels. A label whose prediction is of another deployment counts as
// unmatched; for TaskRegression, so does one that is not a number (or
// whose prediction is not). It fails on an unknown task.
func JoinLabels(deployment string, labels []Label, lookup func(key string) (Prediction, bool), task Task) (QualityReport, error) {
	switch task {
	case TaskAuto, TaskClassification, TaskRegression:
	default:
		return QualityReport{}, fmt.Errorf("unknown task %q: use %s or %s (or leave it out to decide by the values)", task, TaskClassification, TaskRegression)
	}
	rep := QualityReport{Deployment: deployment, Labels: len(labels), Versions: []Quality{}}
	type pair struct {
		p Prediction
		l string
	}
	byVersion := map[string][]pair{}
	for _, l := range labels {
		p, ok := lookup(l.Key)
		if !ok || p.Deployment != deployment {
			rep.Unmatched++
			continue
		}
		byVersion[p.Version] = append(byVersion[p.Version], pair{p, strings.TrimSpace(l.Value)})
	}
	for v, pairs := range byVersion {
		t := task
		if t == TaskAuto {
			t = TaskRegression
			for _, pr := range pairs {
				if _, err := strconv.ParseFloat(pr.l, 64); err != nil || pr.p.IsStr {
					t = TaskClassification
					break
				}
			}
		}
		q := Quality{Version: v, Task: t}
		var right, abs, sq float64
		for _, pr := range pairs {
			if t == TaskClassification {
				q.Matched++
				if sameClass(pr.p, pr.l) {
					right++
				}
				continue
			}
			y, err := strconv.ParseFloat(pr.l, 64)
			if err != nil || pr.p.IsStr {
				rep.Unmatched++
				continue
			}
			q.Matched++
			d := pr.p.Num - y
			abs += math.Abs(d)
			sq += d * d
		}
		if q.Matched > 0 {
			n := float64(q.Matched)
			if t == TaskClassification {
				acc := right / n
				q.Accuracy = &acc
			} else {
				mae, rmse := abs/n, math.Sqrt(sq/n)
				q.MAE, q.RMSE = &mae, &rmse
			}
		}
		rep.Versions = append(rep.Versions, q)
	}
	slices.SortFunc(rep.Versions, func(a, b Quality) int { return strings.Compare(a.Version, b.Version) })
	return rep, nil
}

// sameClass compares a prediction with a label: as numbers when both
// are, else as text.
func sameClass(p Prediction, label string) bool {
	if !p.IsStr {
		if y, err := strconv.ParseFloat(label, 64); err == nil {
			return y == p.Num
		}
	}
	return p.Value() == label
}
