package main

import (
	"slices"
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
	hit := true
	e.setStatus("diabetes", serving.Status{Replicas: 1, ReadyReplicas: 1, DesiredReplicas: 1, ModelVersion: "diabetes:3",
		Reason: "scaled up for 3 held requests", LastScaleTime: &scaled,
		ReplicaStatuses: []serving.ReplicaStatus{{ID: "diabetes-a1", State: serving.ReplicaReady, Endpoint: "http://127.0.0.1:4001",
			StartedAt: now.Add(-90 * time.Second), ModelVersion: "diabetes:3", Message: "warming up",
			ColdStart: []serving.Phase{
				{Name: serving.PhaseProcessStarted, Duration: serving.D(12 * time.Millisecond)},
				{Name: serving.PhaseArtifactFetched, Duration: serving.D(3 * time.Millisecond), Bytes: 1234567, CacheHit: &hit},
				{Name: serving.PhaseModelLoaded, Duration: serving.D(80 * time.Millisecond)},
			}}},
		Ignored: []string{"template.nodeSelector: no nodes to select on one machine", "coldStart.warmPool: no nodes to keep warm on one machine"}})
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
		{"Ignored:", "template.nodeSelector:", "no", "nodes", "to", "select", "on", "one", "machine"},
		{"coldStart.warmPool:", "no", "nodes", "to", "keep", "warm", "on", "one", "machine"},
		{"Replicas:"},
		{"ID", "STATE", "VERSION", "ENDPOINT", "AGE", "COLD", "START"},
		{"diabetes-a1", "ready", "diabetes:3", "http://127.0.0.1:4001", "90s", "process_started", "12ms,",
			"artifact_fetched", "3ms", "(1.2", "MB,", "cache", "hit),", "model_loaded", "80ms", "(total", "95ms)"},
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

// TestDescribeIgnoredRows: each field ebb up cannot honour is a row of its
// own, the first labelled Ignored and the rest aligned under it, with why;
// a deployment with none has no Ignored row.
func TestDescribeIgnoredRows(t *testing.T) {
	now := time.Now()
	d := serving.Deployment{Name: "m", CreatedAt: now, Spec: serving.Spec{Model: "m.json", Engine: "trees"}}
	for _, tt := range []struct {
		name    string
		ignored []string
	}{
		{"none", nil},
		{"one", []string{"template.image: replicas are processes of this ebb binary, not containers"}},
		{"three", []string{
			"template.resources.requests: no scheduler reserves resources on one machine",
			"template.nodeSelector: no nodes to select on one machine",
			"coldStart.prePull: no images to pull on one machine",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d.Status = serving.Status{Ignored: tt.ignored}
			var b strings.Builder
			if err := writeDescribe(&b, d, nil, nil, now); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(b.String(), "\n")
			at := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "  Ignored:") })
			if len(tt.ignored) == 0 {
				if at >= 0 || strings.Contains(b.String(), "Ignored") {
					t.Errorf("an Ignored row with nothing ignored:\n%s", b.String())
				}
				return
			}
			if at < 0 || at+len(tt.ignored) > len(lines) {
				t.Fatalf("no Ignored rows:\n%s", b.String())
			}
			col := strings.Index(lines[at], tt.ignored[0])
			if col < 0 {
				t.Fatalf("first Ignored row %q lacks %q", lines[at], tt.ignored[0])
			}
			for i, ig := range tt.ignored[1:] {
				l := lines[at+1+i]
				if strings.Index(l, ig) != col || strings.TrimSpace(l[:col]) != "" {
					t.Errorf("Ignored row %d = %q; want %q at column %d under the first, with nothing before it\n%s", i+2, l, ig, col, b.String())
				}
			}
			// The rows are the status section's last, before the replicas.
			if next := lines[at+len(tt.ignored)]; next != "Replicas:" {
				t.Errorf("after the Ignored rows: %q, want Replicas:\n%s", next, b.String())
			}
		})
	}
}

// TestCLIDescribeIgnoredUp: against ebb up's real control loop, a
// ModelDeployment with fields one machine cannot honour deploys, and
// describe lists each with why, as serving.Ignored reports them.
func TestCLIDescribeIgnoredUp(t *testing.T) {
	e := newUpEnv(t, "exec sleep 60")
	manifest := `apiVersion: serving.ebb.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: web
spec:
  model: m.json
  engine: echo
  template:
    nodeSelector: {disktype: ssd}
    resources:
      requests: {cpu: 500m}
      limits: {cpu: "2"}
  coldStart:
    warmPool: 1
    prePull: true
`
	e.mustRun(t, manifest, "deploy", "-f", "-")
	spec := specOf(t, []byte(manifest))
	want := serving.Ignored(&spec)
	if len(want) != 4 { // the cpu limit is honoured for echo
		t.Fatalf("serving.Ignored = %q; the test expects 4 fields", want)
	}
	var out string
	waitFor(t, "Ignored rows in describe", func() bool {
		out = e.mustRun(t, "", "describe", "deployment", "web")
		return strings.Contains(out, "Ignored:")
	})
	for _, ig := range want {
		if strings.Count(out, ig) != 1 {
			t.Errorf("describe shows %q %d times; want once:\n%s", ig, strings.Count(out, ig), out)
		}
	}
	if strings.Contains(out, "limits.cpu") {
		t.Errorf("describe reports the honoured cpu limit as ignored:\n%s", out)
	}
}

// TestCLIArtifactFetchShown: the artifact_fetched phase's bytes and cache
// hit or miss appear in describe and in get deployment NAME (also -o
// wide), replica by replica.
func TestCLIArtifactFetchShown(t *testing.T) {
	e := newFullEnv(t)
	e.mustRun(t, `{"name":"m","spec":{"model":"m.json","scaling":{"minReplicas":0,"maxReplicas":3}}}`, "deploy", "-f", "-")
	hit, miss := true, false
	fetched := func(d time.Duration, n int64, h *bool) []serving.Phase {
		return []serving.Phase{
			{Name: serving.PhaseProcessStarted, Duration: serving.D(10 * time.Millisecond)},
			{Name: serving.PhaseArtifactFetched, Duration: serving.D(d), Bytes: n, CacheHit: h},
			{Name: serving.PhaseModelLoaded, Duration: serving.D(50 * time.Millisecond)},
		}
	}
	started := time.Now().Add(-time.Minute)
	e.setStatus("m", serving.Status{Replicas: 3, ReadyReplicas: 3, DesiredReplicas: 3, ReplicaStatuses: []serving.ReplicaStatus{
		{ID: "m-1", State: serving.ReplicaReady, StartedAt: started, ColdStart: fetched(40*time.Millisecond, 2_500_000, &miss)},
		{ID: "m-2", State: serving.ReplicaReady, StartedAt: started, ColdStart: fetched(2*time.Millisecond, 2_500_000, &hit)},
		{ID: "m-3", State: serving.ReplicaReady, StartedAt: started, ColdStart: fetched(30*time.Millisecond, 2_500_000, nil)},
	}})
	want := map[string]string{
		"m-1": "artifact_fetched 40ms (2.5 MB, cache miss)",
		"m-2": "artifact_fetched 2ms (2.5 MB, cache hit)",
		"m-3": "artifact_fetched 30ms (2.5 MB),", // a plain s3:// download: no cache
	}
	for _, args := range [][]string{
		{"describe", "deployment", "m"},
		{"get", "deployment", "m"},
		{"get", "deployment", "m", "-o", "wide"},
	} {
		out := e.mustRun(t, "", args...)
		for id, w := range want {
			line := ""
			for l := range strings.SplitSeq(out, "\n") {
				if f := strings.Fields(l); len(f) > 0 && f[0] == id {
					line = l
				}
			}
			if !strings.Contains(line, w) {
				t.Errorf("ebb %s: replica %s row %q lacks %q\n%s", strings.Join(args, " "), id, line, w, out)
			}
		}
	}
}

func TestColdStartText(t *testing.T) {
	hit, miss := true, false
	for _, tt := range []struct {
		phases []serving.Phase
		want   string
	}{
		{nil, "-"},
		{[]serving.Phase{{Name: serving.PhaseProcessStarted, Duration: serving.D(12 * time.Millisecond)}}, "process_started 12ms (total 12ms)"},
		{[]serving.Phase{{Name: serving.PhaseArtifactFetched, Duration: serving.D(3 * time.Millisecond), Bytes: 1234567, CacheHit: &hit}},
			"artifact_fetched 3ms (1.2 MB, cache hit) (total 3ms)"},
		{[]serving.Phase{{Name: serving.PhaseArtifactFetched, Duration: serving.D(3 * time.Millisecond), Bytes: 999, CacheHit: &miss}},
			"artifact_fetched 3ms (999 B, cache miss) (total 3ms)"},
		{[]serving.Phase{{Name: serving.PhaseArtifactFetched, Duration: serving.D(time.Millisecond), CacheHit: &hit}},
			"artifact_fetched 1ms (cache hit) (total 1ms)"},
		{[]serving.Phase{{Name: serving.PhaseArtifactFetched, Duration: serving.D(time.Millisecond)}}, "artifact_fetched 1ms (total 1ms)"},
		// Only the artifact's fetch carries bytes and a hit.
		{[]serving.Phase{{Name: serving.PhaseModelLoaded, Duration: serving.D(time.Millisecond), Bytes: 5, CacheHit: &hit}}, "model_loaded 1ms (total 1ms)"},
	} {
		if got := coldStart(tt.phases); got != tt.want {
			t.Errorf("coldStart(%+v) = %q, want %q", tt.phases, got, tt.want)
		}
	}
}
