package serving

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidateTraffic(t *testing.T) {
	tests := []struct {
		name    string
		model   string
		traffic []TrafficTarget
		want    string // "" for valid
	}{
		{name: "none", model: "m:1"},
		{name: "canary", model: "m@champion", traffic: []TrafficTarget{{Model: "m@champion", Weight: 90}, {Model: "m:4", Weight: 10}}},
		{name: "pinned-only target", model: "m:1", traffic: []TrafficTarget{{Model: "m:1", Weight: 100}, {Model: "m:2", Weight: 0, Tag: "shadowish"}}},
		{name: "sum", model: "m:1", traffic: []TrafficTarget{{Model: "m:1", Weight: 70}, {Model: "m:2", Weight: 20}}, want: "weights sum to 90; they must sum to 100"},
		{name: "no primary", model: "m:1", traffic: []TrafficTarget{{Model: "m:2", Weight: 50}, {Model: "m:3", Weight: 50}}, want: `must list spec.model ("m:1")`},
		{name: "twice", model: "m:1", traffic: []TrafficTarget{{Model: "m:1", Weight: 50}, {Model: "m:1", Weight: 50}}, want: `"m:1" is listed twice`},
		{name: "negative", model: "m:1", traffic: []TrafficTarget{{Model: "m:1", Weight: 110}, {Model: "m:2", Weight: -10}}, want: "must be between 0 and 100, got -10"},
		{name: "bad tag", model: "m:1", traffic: []TrafficTarget{{Model: "m:1", Weight: 50}, {Model: "m:2", Weight: 50, Tag: "Canary!"}}, want: `"Canary!" must be at most 20 lowercase letters`},
		{name: "tag clash", model: "m:1", traffic: []TrafficTarget{{Model: "m:1", Weight: 50}, {Model: "m:2", Weight: 50, Tag: "v1"}}, want: `"v1" names two targets`},
		{name: "missing model", model: "m:1", traffic: []TrafficTarget{{Model: "m:1", Weight: 50}, {Weight: 50}}, want: "spec.traffic[1].model: is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Deployment{Name: "d", Spec: Spec{Model: tt.model, Traffic: tt.traffic}}
			d.Spec.Default()
			err := d.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate = %v; want valid", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v; want an error with %q", err, tt.want)
			}
		})
	}
}

func TestTracks(t *testing.T) {
	s := Spec{Model: "m@champion", Engine: "", Traffic: []TrafficTarget{
		{Model: "m:4", Weight: 10},
		{Model: "m@champion", Weight: 80},
		{Model: "models/m.json", Weight: 10, Tag: "local"},
	}}
	got := s.Tracks("d")
	want := []Track{
		{Key: "d", Tag: "champion", Model: "m@champion", Weight: 80, Primary: true},
		{Key: "d.v4", Tag: "v4", Model: "m:4", Weight: 10},
		{Key: "d.local", Tag: "local", Model: "models/m.json", Weight: 10},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Tracks (-want +got):\n%s", diff)
	}
	if ts := s.ForTrack(got[2]); ts.Model != "models/m.json" || ts.Engine != DefaultEngine || ts.Traffic != nil {
		t.Errorf("ForTrack(local) = model %q engine %q traffic %v; want the path with the default engine and no split", ts.Model, ts.Engine, ts.Traffic)
	}
	if ts := s.ForTrack(got[1]); ts.Model != "m:4" || ts.Engine != "" {
		t.Errorf("ForTrack(v4) = model %q engine %q; want the registry version, its engine its own", ts.Model, ts.Engine)
	}
	if p := (TrafficTarget{Model: "s3://b/m.json", Weight: 1}).tag(); len(p) != 9 || p[0] != 't' {
		t.Errorf("derived tag of a path = %q; want t and 8 hex digits", p)
	}
	for key, want := range map[string]string{"d": "d", "d.v4": "d"} {
		if got := ParentOf(key); got != want {
			t.Errorf("ParentOf(%q) = %q; want %q", key, got, want)
		}
	}
}
