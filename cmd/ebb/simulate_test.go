package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestSimulate: ebb simulate replays a CSV trace through the autoscaler
// with a deployment's scaling and reports, in JSON, what it used; bad
// input is refused with what to give.
func TestSimulate(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "trace.csv")
	// 10 minutes: 5 requests a second for the first 2 minutes, then quiet.
	var b strings.Builder
	b.WriteString("second,requests\n")
	for s := range 120 {
		b.WriteString(strconv.Itoa(s) + ",5\n")
	}
	b.WriteString("599,0\n")
	os.WriteFile(trace, []byte(b.String()), 0o644)
	dep := filepath.Join(dir, "d.yaml")
	os.WriteFile(dep, []byte("name: d\nspec:\n  engine: echo\n  scaling: {minReplicas: 0, maxReplicas: 4, targetConcurrency: 1, scaleToZeroAfter: 30s}\n"), 0o644)

	out, _, err := runEbbStderr(t, "", "simulate", "--trace", trace, "-f", dep, "--service-time", "500ms", "--cold-start", "2s", "--slo", "1s", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got simulateOutput
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output %s: %v", out, err)
	}
	switch {
	case got.Requests != 600 || got.Seconds != 600:
		t.Errorf("replayed %d requests over %d s; want 600 over 600", got.Requests, got.Seconds)
	case got.PeakReplicas < 2 || got.PeakReplicas > 4:
		t.Errorf("peak %d replicas for 2.5 requests in flight at target 1; want 2 to 4", got.PeakReplicas)
	case got.Reduction <= 0 || got.Reduction >= 0.6:
		t.Errorf("reduction %.3f for 2 busy minutes out of 10; want well under 0.6", got.Reduction)
	case got.ColdStarts == 0 || got.HeldWhileCold == 0 || got.LongestWaitMs < 1900:
		t.Errorf("%d cold starts, %d held, longest wait %.0f ms; want the first request held about the 2 s cold start", got.ColdStarts, got.HeldWhileCold, got.LongestWaitMs)
	case got.MetSLOWhenWarm < 99:
		t.Errorf("SLO met by %.1f%% of warm requests; want all", got.MetSLOWhenWarm)
	}

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"simulate"}, "give --trace FILE"},
		{[]string{"simulate", "--scenario", "weekend"}, `unknown scenario "weekend"`},
		{[]string{"simulate", "--trace", filepath.Join(dir, "absent.csv")}, "open the trace"},
	} {
		if _, _, err := runEbbStderr(t, "", bad.args...); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ebb %s = %v; want an error with %q", strings.Join(bad.args, " "), err, bad.want)
		}
	}
}
