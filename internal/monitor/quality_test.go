package monitor

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func ptr(v float64) *float64 { return &v }

func TestJoinLabels(t *testing.T) {
	preds := map[string]Prediction{
		"a": {Key: "a", Deployment: "d", Version: "m:1", Num: 1},
		"b": {Key: "b", Deployment: "d", Version: "m:1", Num: 0},
		"c": {Key: "c", Deployment: "d", Version: "m:2", Num: 2.5},
		"e": {Key: "e", Deployment: "d", Version: "m:2", Num: 4},
		"s": {Key: "s", Deployment: "d", Version: "m:3", Str: "cat", IsStr: true},
		"x": {Key: "x", Deployment: "other", Version: "m:1", Num: 1},
	}
	lookup := func(k string) (Prediction, bool) { p, ok := preds[k]; return p, ok }
	tests := []struct {
		name   string
		labels []Label
		task   Task
		want   QualityReport
	}{
		{
			name:   "auto: numbers are regression, strings classification",
			labels: []Label{{"c", "3.5"}, {"e", "2"}, {"s", "cat"}, {"x", "1"}, {"zz", "1"}},
			want: QualityReport{Deployment: "d", Labels: 5, Unmatched: 2, Versions: []Quality{
				{Version: "m:2", Matched: 2, Task: TaskRegression, MAE: ptr(1.5), RMSE: ptr(1.5811388300841898)},
				{Version: "m:3", Matched: 1, Task: TaskClassification, Accuracy: ptr(1)},
			}},
		},
		{
			name:   "classification of number codes",
			labels: []Label{{"a", "1"}, {"b", " 1 "}, {"c", "2.5"}},
			task:   TaskClassification,
			want: QualityReport{Deployment: "d", Labels: 3, Versions: []Quality{
				{Version: "m:1", Matched: 2, Task: TaskClassification, Accuracy: ptr(0.5)},
				{Version: "m:2", Matched: 1, Task: TaskClassification, Accuracy: ptr(1)},
			}},
		},
		{
			name:   "regression leaves out what is not a number",
			labels: []Label{{"a", "yes"}, {"b", "0.5"}, {"s", "2"}},
			task:   TaskRegression,
			want: QualityReport{Deployment: "d", Labels: 3, Unmatched: 2, Versions: []Quality{
				{Version: "m:1", Matched: 1, Task: TaskRegression, MAE: ptr(0.5), RMSE: ptr(0.5)},
				{Version: "m:3", Task: TaskRegression},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := JoinLabels("d", tt.labels, lookup, tt.task)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := JoinLabels("d", nil, lookup, "ranking"); err == nil {
		t.Error("an unknown task was accepted")
	}
}
