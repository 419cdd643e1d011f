package simulate

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

func i32(n int32) *int32 { return &n }

// TestBusinessHoursWeek replays a week of business-hours traffic (the
// on-demand half of our source's scenario, which cut its use to 0.30 of
// always-on) through the real autoscaler: with scale to zero it should use
// at most a quarter of always-on's replica-seconds, and every request that
// found a replica ready should meet the latency objective. A schedule
// floor during the window removes most cold starts at the cost of some
// replica-seconds.
func TestBusinessHoursWeek(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	monday := time.Date(2026, 12, 7, 0, 0, 0, 0, paris)
	trace := BusinessHours(40, paris, monday)
	// A model of a few hundred milliseconds a request (a GPU model), two
	// requests at once per replica.
	base := serving.Scaling{MinReplicas: 0, MaxReplicas: 16, TargetConcurrency: 2, ScaleToZeroAfter: serving.D(5 * time.Minute),
		StableWindow: serving.D(time.Minute)}
	withFloor := base
	withFloor.Schedule = []serving.ScheduleWindow{{Name: "business-hours", Days: []string{"Mon-Fri"}, Start: "07:00", End: "17:00", TimeZone: "Europe/Paris", MinReplicas: i32(2)}}
	cfg := Config{Start: monday, ColdStarts: []time.Duration{20 * time.Millisecond, 35 * time.Millisecond}, ServiceTimes: []time.Duration{200 * time.Millisecond, 300 * time.Millisecond, 400 * time.Millisecond},
		SLO: time.Second, Seed: 1}

	for _, tt := range []struct {
		name          string
		scaling       serving.Scaling
		maxReduction  float64
		maxColdStarts int
	}{
		{name: "scale to zero", scaling: base, maxReduction: 0.25},
		{name: "with a business-hours floor", scaling: withFloor, maxReduction: 0.30},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			c.Scaling = tt.scaling
			rep, err := Run(c, trace)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(rep)
			if rep.Requests < 1_000_000 {
				t.Fatalf("%d requests in the week; the trace should hold over a million", rep.Requests)
			}
			if r := rep.Reduction(); r <= 0 || r > tt.maxReduction {
				t.Errorf("reduction %.3f; want at most %.2f of always-on", r, tt.maxReduction)
			}
			if warm := rep.MetSLOWarmPercent(); warm < 99 {
				t.Errorf("SLO met by %.2f%% of requests that found a replica ready; want at least 99%%", warm)
			}
			if rep.ColdStarts == 0 {
				t.Error("no cold start in a week that scales to zero")
			}
		})
	}
}

// TestCSV: a trace survives WriteCSV and ReadCSV, with a header, comments
// and sparse rows; bad rows are refused with their line.
func TestCSV(t *testing.T) {
	in := Counts{0, 3, 0, 0, 7}
	var b bytes.Buffer
	if err := WriteCSV(&b, in); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCSV(strings.NewReader("# exported from the access log\n" + b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) || got[1] != 3 || got[4] != 7 {
		t.Fatalf("ReadCSV(WriteCSV(%v)) = %v", in, got)
	}
	for _, bad := range []struct{ text, want string }{
		{"0,1\n2,x\n", "trace line 2"},
		{"0;1\n", "is not SECOND,REQUESTS"},
		{"0,-1\n", "both 0 or more"},
		{"99999999,1\n", "past the longest trace"},
		{"second,requests\n", "no requests"},
	} {
		if _, err := ReadCSV(strings.NewReader(bad.text)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ReadCSV(%q) = %v; want an error with %q", bad.text, err, bad.want)
		}
	}
}
