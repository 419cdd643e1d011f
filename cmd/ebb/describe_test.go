package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/serving"
)

func TestCLIDescribe(t *testing.T) {
	e := newFullEnv(t)
	e.mustRun(t, "", "models", "push", diabetesFile(t), "--name", "diabetes", "--alias", "champion")
	e.st.Now = func() time.Time { return time.Now().Add(-3 * time.Hour) }
	e.mustRun(t, `{"name":"diabetes","spec":{"model":"diabetes@champion","engine":"trees","env":{"OMP_NUM_THREADS":"2"},
		"scaling":{"minReplicas":0,"maxReplicas":4,"scaleToZeroAfter":"30s"}}}`, "deploy", "-f", "-")
	now := time.Now()
	scaled := now.Add(-5 * time.Minute)
	e.setStatus("diabetes", serving.Status{Replicas: 1, ReadyReplicas: 1, DesiredReplicas: 1, ModelVersion: "diabetes:3",
		Reason: "scaled up for 3 held requests", LastScaleTime: &scaled,
		ReplicaStatuses: []serving.ReplicaStatus{{ID: "diabetes-a1", State: serving.ReplicaReady, Endpoint: "http://127.0.0.1:4001",
			StartedAt: now.Add(-90 * time.Second), ModelVersion: "diabetes:3", Message: "warming up",
			ColdStart: []serving.Phase{
				{Name: serving.PhaseProcessStarted, Duration: serving.D(12 * time.Millisecond)},
				{Name: serving.PhaseModelLoaded, Duration: serving.D(80 * time.Millisecond)},
			}}}})
	e.mu.Lock()
	e.events["diabetes"] = []serving.Event{
		{Time: now.Add(-time.Minute), Type: serving.EventWarning, Reason: serving.ReasonReplicaFailed, Message: "model does not load; next start in 1s", Count: 3},
		{Time: now.Add(-5 * time.Minute), Type: serving.EventNormal, Reason: serving.ReasonScaledUp, Message: "desired replicas 0 → 1: 3 requests held"},
	}
	e.mu.Unlock()

	out := e.mustRun(t, "", "describe", "deployment", "diabetes")
	want := [][]string{
		{"Name:", "diabetes"},
		{"Created:", "~", "(3h", "ago)"},
		{"Generation:", "1"},
		{"Model:", "diabetes@champion"},
		{"Engine:", "trees"},
		{"Scaling:", "0", "to", "4", "replicas,", "target", "8", "requests", "in", "flight", "per", "replica,", "to", "zero", "after", "30s", "idle"},
		{"Env:", "OMP_NUM_THREADS=2"},
		{"Status:"},
		{"Serving:", "diabetes:3"},
		{"Replicas:", "1", "ready,", "1", "desired,", "1", "in", "all"},
		{"Last", "scale:", "~", "(5m", "ago)"},
		{"Reason:", "scaled", "up", "for", "3", "held", "requests"},
		{"Replicas:"},
		{"ID", "STATE", "VERSION", "ENDPOINT", "AGE", "COLD", "START"},
		{"diabetes-a1", "ready", "diabetes:3", "http://127.0.0.1:4001", "90s", "process_started", "12ms,", "model_loaded", "80ms", "(total", "92ms)"},
		{"diabetes-a1:", "warming", "up"},
		{"Events:"},
		{"TYPE", "REASON", "AGE", "MESSAGE"},
		{"Normal", "ScaledUp", "5m", "desired", "replicas", "0", "→", "1:", "3", "requests", "held"},
		{"Warning", "ReplicaFailed", "60s", "(x3)", "model", "does", "not", "load;", "next", "start", "in", "1s"},
	}
	got := fields(out)
	for _, r := range got {
		if len(r) > 1 && (r[0] == "Created:" || r[0] == "scale:" || r[1] == "scale:") {
			// RFC 3339 times change from run to run.
			for i, f := range r {
				if strings.Contains(f, "T") && strings.HasSuffix(f, "Z") {
					r[i] = "~"
				}
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("describe (-want +got):\n%s\n%s", diff, out)
	}

	// Nothing yet: <none>; an unknown deployment: the API's hint.
	e.mustRun(t, `{"name":"iris","spec":{"model":"iris.json","replicas":2}}`, "deploy", "-f", "-")
	out = e.mustRun(t, "", "describe", "deploy", "iris")
	if strings.Count(out, "<none>") != 2 || !strings.Contains(out, "pinned at 2 replicas") || !strings.Contains(out, "ebb scale iris --auto") {
		t.Errorf("describe of a pinned deployment with no replicas or events:\n%s", out)
	}
	// An http deployment speaking the OpenAI API shows its upstream model
	// and protocol.
	e.mustRun(t, `{"name":"llm","spec":{"engine":"http","url":"http://127.0.0.1:9","upstreamModel":"org/llama","protocol":"openai"}}`, "deploy", "-f", "-")
	out = e.mustRun(t, "", "describe", "deploy", "llm")
	for _, want := range []string{"Upstream model:", "org/llama", "Protocol:", "openai"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe llm: no %q in:\n%s", want, out)
		}
	}
	if _, err := e.run(t, "", "describe", "deployment", "nope"); err == nil || !strings.Contains(err.Error(), "ebb get deployments") {
		t.Errorf("describe nope = %v", err)
	}
	if _, err := e.run(t, "", "describe", "pod", "x"); err == nil || !strings.Contains(err.Error(), `unknown resource "pod"`) {
		t.Errorf("describe pod = %v", err)
	}
}

// TestCLIDescribeOldServer: a server without the events route still gets
// described, with a note where the events would be.
func TestCLIDescribeOldServer(t *testing.T) {
	e := newCLIEnv(t) // no events route
	isolate(t)
	e.mustRun(t, diabetesYAML, "deploy", "-f", "-")
	out := e.mustRun(t, "", "describe", "deployment", "diabetes")
	if !strings.Contains(out, "Events:\n  <unavailable: this server does not serve events (an older ebb)>") {
		t.Errorf("describe against a server without events:\n%s", out)
	}
}
