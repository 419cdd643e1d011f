package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

func TestDescribePredictionLog(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		name string
		p    *serving.PredictionLog
		want string // "": no row
	}{
		{"none", nil, ""},
		{"a tenth", &serving.PredictionLog{Sample: 0.1}, "10% of requests"},
		{"off", &serving.PredictionLog{}, "off"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := serving.Deployment{Name: "m", CreatedAt: now, Spec: serving.Spec{Model: "m.json", Engine: "trees", PredictionLog: tt.p}}
			var b strings.Builder
			if err := writeDescribe(&b, d, nil, nil, now); err != nil {
				t.Fatal(err)
			}
			row := regexp.MustCompile(`(?m)^Prediction log: +(.*)$`).FindStringSubmatch(b.String())
			switch {
			case tt.want == "" && row != nil:
				t.Errorf("a Prediction log row without spec.predictionLog:\n%s", b.String())
			case tt.want != "" && (row == nil || row[1] != tt.want):
				t.Errorf("Prediction log row %q; want %q:\n%s", row, tt.want, b.String())
			}
		})
	}
}
