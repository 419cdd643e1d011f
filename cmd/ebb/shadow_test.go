package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// gatewayShadows stands in for the gateways' tallies of shadows.
type gatewayShadows struct {
	mu    sync.Mutex
	model string
	sum   traffic.Summary
	// spec reads a deployment's current spec.shadow: the figures are its
	// (its ID) when it serves model.
	spec func(deployment string) *serving.Shadow
}

func (g *gatewayShadows) set(model string, sum traffic.Summary) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.model, g.sum = model, sum
}

func (g *gatewayShadows) ShadowSummary(deployment string) (traffic.Summary, string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if sh := g.spec(deployment); sh != nil && sh.Model == g.model {
		return g.sum, sh.ID(), true
	}
	return g.sum, "earlier", g.model != ""
}

func TestCLIShadow(t *testing.T) {
	e := newFullEnv(t)
	gw := &gatewayShadows{spec: func(name string) *serving.Shadow {
		d, err := e.st.GetDeployment(context.Background(), name)
		if err != nil {
			return nil
		}
		return d.Spec.Shadow
	}}
	h := api.New(e.st, e.ctl, nil)
	h.MountModels(e.svc)
	m := rollout.New(e.st, e.st, nil, rollout.Options{History: e.svc, Shadows: gw})
	h.MountRollouts(m)
	h.MountShadows(m)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.url = srv.URL

	model := diabetesFile(t)
	for range 2 {
		e.mustRun(t, "", "models", "push", model, "--name", "diabetes")
	}
	e.mustRun(t, `{"name":"web","spec":{"model":"diabetes:1"}}`, "deploy", "-f", "-")

	out := e.mustRun(t, "", "shadow", "start", "web", "--to", "diabetes:2", "--requests", "300", "--tolerance", "1e-3", "--percent", "20")
	for _, want := range []string{"Shadow:      diabetes:2, 20% of requests, for 300 requests (mirroring)", "Tolerance:   abs 0.001, rel 0.001; at most 4 in flight", "Verdict:     pending"} {
		if !strings.Contains(out, want) {
			t.Errorf("shadow start output lacks %q:\n%s", want, out)
		}
	}
	d, err := e.st.GetDeployment(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if sh := d.Spec.Shadow; sh == nil || sh.Requests != 300 || sh.Percent != 20 || *sh.Tolerance != (serving.Tolerance{Abs: 1e-3, Rel: 1e-3}) || sh.Until != "" {
		t.Fatalf("spec.shadow = %+v", d.Spec.Shadow)
	}

	// What the gateways compared, shown with up to 3 samples, cut short.
	long := strings.Repeat("x", 1000)
	sample := traffic.Sample{Input: long, Primary: `{"outputs":[1]}`, Shadow: `{"outputs":[2]}`, Diff: traffic.Result{Tensor: "predict", Index: 0, Reason: `output "predict" differs at element 0: primary 1, shadow 2`}}
	gw.set("diabetes:2", traffic.Summary{Compared: 250, Agreed: 240, Agreement: 0.96, ShadowErrors: 1, LastShadowError: "shadow answered 500", Dropped: 7,
		LatencyRatio: 1.25, NoiseCompared: 50, NoiseAgreement: 1, Samples: []traffic.Sample{sample, sample, sample, sample, sample}})
	out = e.mustRun(t, "", "shadow", "status", "web")
	want := [][]string{
		{"COMPARED", "AGREED", "AGREEMENT", "SHADOW", "ERRORS", "DROPPED", "LATENCY", "RATIO", "NOISE"},
		{"250", "240", "96.0%", "1", "7", "1.25x", "100.0%", "of", "50"},
	}
	if got := fields(out)[4:6]; !equalRows(got, want) {
		t.Errorf("shadow status table = %v; want %v\n%s", got, want, out)
	}
	for _, want := range []string{"Verdict:     pending: judged 251 of 300 requests", "Last shadow error: shadow answered 500", "Disagreements (3 of 5 kept", "  3. output \"predict\" differs", "…(840 more bytes)"} {
		if !strings.Contains(out, want) {
			t.Errorf("shadow status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "  4. ") || strings.Contains(out, long) {
		t.Errorf("shadow status shows more than 3 samples, or one whole:\n%s", out)
	}

	var st map[string]any
	if err := json.Unmarshal([]byte(e.mustRun(t, "", "shadow", "status", "web", "-o", "json", "--min-agreement", "0.95", "--min-requests", "200")), &st); err != nil {
		t.Fatal(err)
	}
	if st["compared"] != 250.0 || st["agreement"] != 0.96 || st["shadowErrors"] != 1.0 || st["latencyRatio"] != 1.25 || st["dropped"] != 7.0 ||
		st["verdict"].(map[string]any)["outcome"] != "pass" || len(st["samples"].([]any)) != 5 {
		t.Errorf("shadow status -o json = %v", st)
	}

	// The rollout's gate: the shadow's verdict by its criteria.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--to", "diabetes:2", "--require-shadow-agreement", "0.99", "--require-shadow-requests", "200"}, "the shadow of diabetes:2 is fail: agreement 95.6% < 99.0%"},
		{[]string{"--to", "diabetes:1", "--require-shadow-requests", "10"}, "already serves diabetes:1"},
		{[]string{"--to", "/models/other.json", "--require-shadow-requests", "10"}, "shadows diabetes:2, not /models/other.json"},
	} {
		out, err := e.run(t, "", append([]string{"rollout", "start", "web"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ebb rollout start web %s = %q, %v; want an error with %q", strings.Join(tt.args, " "), out, err, tt.want)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--requests", "5", "--duration", "1m"}, "requests"},
		{[]string{"--percent", "0"}, "--percent 0: give a share of 1 to 100"},
		{[]string{"--max-concurrency", "0"}, "--max-concurrency 0"},
		{[]string{"--duration", "10ms"}, "duration 10ms: give 1s or more"},
		{[]string{"--tolerance", "-1"}, "spec.shadow.tolerance.abs"},
	} {
		out, err := e.run(t, "", append([]string{"shadow", "start", "web", "--to", "diabetes:2"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ebb shadow start web %s = %q, %v; want an error with %q", strings.Join(tt.args, " "), out, err, tt.want)
		}
	}

	out = e.mustRun(t, "", "shadow", "stop", "web")
	if !strings.Contains(out, "for 300 requests (stopped)") || !strings.Contains(out, "250") {
		t.Errorf("shadow stop output:\n%s", out)
	}
	if _, err := e.run(t, "", "shadow", "status", "web"); err == nil || !strings.Contains(err.Error(), "ebb shadow start web --to MODEL") {
		t.Errorf("status after stop = %v; want no shadow, saying how to start one", err)
	}

	// A shadow that passes lets the rollout start, and ends as it does.
	e.mustRun(t, "", "shadow", "start", "web", "--to", "diabetes:2", "--duration", "1h")
	gw.set("diabetes:2", traffic.Summary{Compared: 300, Agreed: 300, Agreement: 1})
	if out := e.mustRun(t, "", "rollout", "start", "web", "--to", "diabetes:2", "--require-shadow-agreement", "0.99", "--require-shadow-requests", "200"); !strings.Contains(out, "Phase:       Progressing") {
		t.Errorf("gated rollout start:\n%s", out)
	}
	if d, _ := e.st.GetDeployment(context.Background(), "web"); d.Spec.Shadow != nil || len(d.Spec.Traffic) != 2 {
		t.Errorf("after the rollout started: shadow %+v, traffic %+v; want the canary and no shadow", d.Spec.Shadow, d.Spec.Traffic)
	}
}

func equalRows(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Join(a[i], " ") != strings.Join(b[i], " ") {
			return false
		}
	}
	return true
}
