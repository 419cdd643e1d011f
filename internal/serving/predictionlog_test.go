package serving

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestValidatePredictionLog(t *testing.T) {
	tests := []struct {
		name   string
		sample float64
		want   string // a substring of the error; "" means valid
	}{
		{"off", 0, ""},
		{"a tenth", 0.1, ""},
		{"all", 1, ""},
		{"over one", 1.5, "spec.predictionLog.sample: must be between 0 and 1 (the share of requests logged: 0.1 logs one in ten, 1 every one), got 1.5"},
		{"a percentage", 10, "got 10"},
		{"negative", -0.1, "got -0.1"},
		{"NaN", math.NaN(), "got NaN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := valid()
			d.Spec.PredictionLog = &PredictionLog{Sample: tt.sample}
			err := d.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v; want valid", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v; want an error with %q", err, tt.want)
			}
		})
	}
}

func TestPredictionLogText(t *testing.T) {
	for _, tt := range []struct {
		p    *PredictionLog
		want string
	}{
		{nil, "off"},
		{&PredictionLog{}, "off"},
		{&PredictionLog{Sample: 0.1}, "10% of requests"},
		{&PredictionLog{Sample: 1}, "100% of requests"},
		{&PredictionLog{Sample: 0.0025}, "0.25% of requests"},
	} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%+v.String() = %q; want %q", tt.p, got, tt.want)
		}
	}
	var s Spec
	if err := json.Unmarshal([]byte(`{"model":"m","predictionLog":{"sample":0.5}}`), &s); err != nil || s.PredictionLog.Ratio() != 0.5 {
		t.Errorf("spec.predictionLog read as %+v, %v; want sample 0.5", s.PredictionLog, err)
	}
}
