package serving

import (
	"strings"
	"testing"
)

func TestValidateScatter(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Deployment)
		want   []string // substrings of the error; none means valid
	}{
		{name: "segment rows", change: func(d *Deployment) { d.Spec.Scatter = &Scatter{SegmentRows: 25000} }},
		{name: "one row per segment", change: func(d *Deployment) { d.Spec.Scatter = &Scatter{SegmentRows: 1, MaxSegments: MaxMaxSegments} }},
		{name: "no segment rows", change: func(d *Deployment) { d.Spec.Scatter = &Scatter{} },
			want: []string{"spec.scatter.segmentRows: must be at least 1 (the most rows one segment carries), got 0"}},
		{name: "negative segment rows", change: func(d *Deployment) { d.Spec.Scatter = &Scatter{SegmentRows: -5} },
			want: []string{"spec.scatter.segmentRows: must be at least 1", "got -5"}},
		{name: "too many segments", change: func(d *Deployment) { d.Spec.Scatter = &Scatter{SegmentRows: 10, MaxSegments: 1025} },
			want: []string{"spec.scatter.maxSegments: must be between 1 and 1024, got 1025"}},
		{name: "negative max segments", change: func(d *Deployment) { d.Spec.Scatter = &Scatter{SegmentRows: 10, MaxSegments: -1} },
			want: []string{"spec.scatter.maxSegments: must be between 1 and 1024, got -1"}},
		{name: "openai", change: func(d *Deployment) {
			d.Spec.Engine, d.Spec.Model, d.Spec.URL, d.Spec.Protocol = "http", "", "http://127.0.0.1:1", ProtocolOpenAI
			d.Spec.Scatter = &Scatter{SegmentRows: 10}
		}, want: []string{"spec.scatter: splits OIP v2 infer requests"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := valid()
			tt.change(&d)
			err := d.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v; want valid", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil; want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v; want it to say %q", err, w)
				}
			}
		})
	}
}

func TestMaxSegmentsOrDefault(t *testing.T) {
	tests := []struct {
		sc   *Scatter
		want int
	}{
		{nil, DefaultMaxSegments},
		{&Scatter{SegmentRows: 1}, DefaultMaxSegments},
		{&Scatter{SegmentRows: 1, MaxSegments: 4}, 4},
	}
	for _, tt := range tests {
		if got := tt.sc.MaxSegmentsOrDefault(); got != tt.want {
			t.Errorf("%+v.MaxSegmentsOrDefault() = %d; want %d", tt.sc, got, tt.want)
		}
	}
}
