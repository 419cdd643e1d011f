package serving

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestValidateShadow(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*Spec)
		want   string // a substring of the error; "" for valid
	}{
		{"valid", func(s *Spec) {}, ""},
		{"the primary's own model", func(s *Spec) { s.Shadow.Model = s.Model }, ""},
		{"every field", func(s *Spec) {
			s.Shadow.Percent, s.Shadow.MaxConcurrency, s.Shadow.Requests = 5, 16, 100
			s.Shadow.Until, s.Shadow.Tolerance = "2026-12-02T15:04:05Z", &Tolerance{Abs: 0.01, Rel: 0}
		}, ""},
		{"no model", func(s *Spec) { s.Shadow.Model = " " }, "spec.shadow.model"},
		{"percent over 100", func(s *Spec) { s.Shadow.Percent = 101 }, "spec.shadow.percent"},
		{"negative percent", func(s *Spec) { s.Shadow.Percent = -1 }, "spec.shadow.percent"},
		{"concurrency over the cap", func(s *Spec) { s.Shadow.MaxConcurrency = MaxShadowConcurrency + 1 }, "spec.shadow.maxConcurrency"},
		{"negative requests", func(s *Spec) { s.Shadow.Requests = -5 }, "spec.shadow.requests"},
		{"until not a time", func(s *Spec) { s.Shadow.Until = "tomorrow" }, "spec.shadow.until"},
		{"NaN tolerance", func(s *Spec) { s.Shadow.Tolerance = &Tolerance{Abs: math.NaN()} }, "spec.shadow.tolerance.abs"},
		{"negative tolerance", func(s *Spec) { s.Shadow.Tolerance = &Tolerance{Rel: -1} }, "spec.shadow.tolerance.rel"},
		{"openai", func(s *Spec) { s.Protocol = ProtocolOpenAI; s.Engine = "http"; s.URL = "http://127.0.0.1:1" }, "protocol openai"},
		{"a traffic target tagged shadow", func(s *Spec) {
			s.Traffic = []TrafficTarget{{Model: s.Model, Weight: 90}, {Model: "m-v3.json", Weight: 10, Tag: ShadowTag}}
		}, "shadow's track"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := Deployment{Name: "m", Spec: Spec{Model: "m.json", Shadow: &Shadow{Model: "m-v2.json"}}}
			c.change(&d.Spec)
			d.Spec.Default()
			err := d.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Errorf("Validate = %v; want valid", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("Validate = %v; want an error about %s", err, c.want)
			}
		})
	}
}

func TestShadowDefaults(t *testing.T) {
	var sh Shadow
	if sh.PercentOrDefault() != 100 || sh.MaxConcurrencyOrDefault() != 4 || sh.ToleranceOrDefault() != DefaultTolerance || !sh.UntilTime().IsZero() {
		t.Errorf("zero Shadow's defaults: %d%%, %d, %+v, %v", sh.PercentOrDefault(), sh.MaxConcurrencyOrDefault(), sh.ToleranceOrDefault(), sh.UntilTime())
	}
	sh = Shadow{Until: "2026-12-02T15:04:05Z"}
	if want := time.Date(2026, 12, 2, 15, 4, 5, 0, time.UTC); !sh.UntilTime().Equal(want) {
		t.Errorf("UntilTime = %v, want %v", sh.UntilTime(), want)
	}
	s := Spec{Model: "m.json", Shadow: &Shadow{Model: "m-v2.json"}}
	tr, ok := s.ShadowTrack("m")
	if !ok || tr.Key != "m.shadow" || tr.Tag != ShadowTag || tr.Model != "m-v2.json" {
		t.Errorf("ShadowTrack = %+v, %v", tr, ok)
	}
	if ts := s.ForTrack(tr); ts.Model != "m-v2.json" || ts.Shadow != nil {
		t.Errorf("the shadow track's spec = model %q, shadow %+v; want m-v2.json and none", ts.Model, ts.Shadow)
	}
}
