package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

func (e *cliEnv) setStatus(name string, st serving.Status) {
	e.ctl.mu.Lock()
	defer e.ctl.mu.Unlock()
	e.ctl.statuses[name] = st
}

// replicas returns replica statuses: per state, n of the new spec, or of
// an earlier one (outdated).
func replicas(newReady, newStarting, oldReady, draining int) []serving.ReplicaStatus {
	var rs []serving.ReplicaStatus
	add := func(n int, state string, outdated bool) {
		for range n {
			rs = append(rs, serving.ReplicaStatus{ID: "diabetes-" + string(rune('a'+len(rs))), State: state, Outdated: outdated})
		}
	}
	add(newReady, serving.ReplicaReady, false)
	add(newStarting, serving.ReplicaStarting, false)
	add(oldReady, serving.ReplicaReady, true)
	add(draining, serving.ReplicaDraining, true)
	return rs
}

func withWaitPoll(t *testing.T) {
	old := deployWaitPoll
	deployWaitPoll = 5 * time.Millisecond
	t.Cleanup(func() { deployWaitPoll = old })
}

// TestCLIDeployRollover: deploying another model over a deployment with
// replicas says it rolls over, from which model to which; a change that
// runs the same replicas (scaling) or a deployment with none says nothing
// more.
func TestCLIDeployRollover(t *testing.T) {
	e := newCLIEnv(t)
	spec := func(model string, max int) string {
		return "name: diabetes\nspec:\n  model: " + model + "\n  scaling:\n    maxReplicas: " + string(rune('0'+max)) + "\n"
	}
	e.mustRun(t, "", "deploy", "-f", writeFile(t, "v1.yaml", spec("examples/diabetes/model.json", 4)))
	// At zero: nothing rolls.
	if out := e.mustRun(t, "", "deploy", "-f", writeFile(t, "v2.yaml", spec("v2.json", 4))); out != "deployment/diabetes configured\n" {
		t.Errorf("deploy at zero printed %q", out)
	}
	e.setStatus("diabetes", serving.Status{Replicas: 2, ReadyReplicas: 2, DesiredReplicas: 2, SpecGeneration: 2, ReplicaStatuses: replicas(2, 0, 0, 0)})
	for _, tt := range []struct {
		name, file, want string
	}{
		{"another model", spec("v3.json", 4), "deployment/diabetes configured: rolling over from v2.json to v3.json\n" +
			"  2 replicas of the old spec serve until the new ones are ready; --wait waits for it, `ebb get deployment diabetes -w` watches\n"},
		{"scaling only", spec("v3.json", 5), "deployment/diabetes configured\n"},
		{"unchanged", spec("v3.json", 5), "deployment/diabetes configured\n"},
		{"another engine", spec("v3.json", 5) + "  engine: echo\n", "deployment/diabetes configured: rolling over to a new spec of v3.json\n" +
			"  2 replicas of the old spec serve until the new ones are ready; --wait waits for it, `ebb get deployment diabetes -w` watches\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if out := e.mustRun(t, "", "deploy", "-f", writeFile(t, "d.yaml", tt.file)); out != tt.want {
				t.Errorf("deploy printed %q, want %q", out, tt.want)
			}
		})
	}
	// A registry alias shows the version it resolved to.
	e.setStatus("diabetes", serving.Status{Replicas: 1, ReadyReplicas: 1, DesiredReplicas: 1, ModelVersion: "diabetes:3", ReplicaStatuses: replicas(1, 0, 0, 0)})
	if _, err := e.st.UpdateDeployment(t.Context(), "diabetes", func(d *serving.Deployment) error {
		d.Spec.Model = "diabetes@champion"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	out := e.mustRun(t, "", "deploy", "-f", writeFile(t, "d.yaml", spec("diabetes:4", 5)+"  engine: echo\n"))
	if want := "deployment/diabetes configured: rolling over from diabetes@champion (v3) to diabetes:4\n"; !strings.HasPrefix(out, want) {
		t.Errorf("deploy over an alias printed %q, want %q first", out, want)
	}
}

// TestCLIDeployWait: --wait follows the rollover through the real admin
// API, printing a line whenever the replicas change, until the new spec
// serves everything.
func TestCLIDeployWait(t *testing.T) {
	withWaitPoll(t)
	e := newCLIEnv(t)
	e.mustRun(t, "", "deploy", "-f", writeFile(t, "v1.yaml", diabetesYAML)) // generation 1
	e.setStatus("diabetes", serving.Status{Replicas: 2, ReadyReplicas: 2, DesiredReplicas: 2, SpecGeneration: 1, ReplicaStatuses: replicas(2, 0, 0, 0)})

	file := writeFile(t, "v2.yaml", strings.Replace(diabetesYAML, "examples/diabetes/model.json", "v2.json", 1))
	b := runBackground(t, "deploy", "-f", file, "--wait", "--timeout", "20s", "--server", e.url)
	steps := []struct {
		st   serving.Status
		want string
	}{
		{serving.Status{Replicas: 2, ReadyReplicas: 2, DesiredReplicas: 2, SpecGeneration: 1, ReplicaStatuses: replicas(2, 0, 0, 0)},
			"deployment/diabetes configured: rolling over from examples/diabetes/model.json to v2.json\n" +
				"Waiting for deployment/diabetes: the control loop has not taken the new spec yet\n"},
		{serving.Status{DesiredReplicas: 2, SpecGeneration: 2, ReplicaStatuses: replicas(0, 1, 2, 0)},
			"Waiting for deployment/diabetes: 0 of 2 new replicas ready (1 starting); old: 2 serving, 0 draining\n"},
		{serving.Status{DesiredReplicas: 2, SpecGeneration: 2, ReplicaStatuses: append(replicas(1, 1, 1, 1), serving.ReplicaStatus{ID: "diabetes-z", State: serving.ReplicaFailed, Message: "load v2.json: bad magic"})},
			"Waiting for deployment/diabetes: 1 of 2 new replicas ready (1 starting); old: 1 serving, 1 draining\n" +
				"  replica diabetes-z: load v2.json: bad magic\n"},
		{serving.Status{DesiredReplicas: 2, SpecGeneration: 2, ReplicaStatuses: replicas(2, 0, 0, 0)},
			"deployment/diabetes rolled out: 2 of 2 replicas ready, serving v2.json\n"},
	}
	var want string
	for i, s := range steps {
		e.setStatus("diabetes", s.st)
		want += s.want
		waitFor(t, "step "+string(rune('1'+i)), func() bool { return b.out.String() == want })
	}
	select {
	case err := <-b.done:
		if err != nil {
			t.Errorf("deploy --wait: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("deploy --wait did not return once the rollover was done")
	}
}

// TestCLIDeployWaitEnds: --wait returns at once for a new deployment at
// zero, and fails on a failed deployment and after --timeout.
func TestCLIDeployWaitEnds(t *testing.T) {
	withWaitPoll(t)
	for _, tt := range []struct {
		name    string
		st      serving.Status
		timeout string
		want    string
		wantErr []string
	}{
		{name: "new at zero", st: serving.Status{SpecGeneration: 1},
			want: "deployment/diabetes created\ndeployment/diabetes rolled out: scaled to zero; the next request starts examples/diabetes/model.json\n"},
		{name: "new with replicas", st: serving.Status{SpecGeneration: 1, DesiredReplicas: 1, ReplicaStatuses: replicas(1, 0, 0, 0)},
			want: "deployment/diabetes created\ndeployment/diabetes rolled out: 1 of 1 replicas ready, serving examples/diabetes/model.json\n"},
		{name: "failed", st: serving.Status{SpecGeneration: 1, DesiredReplicas: 1, Failure: "engine trees: not an XGBoost model"},
			wantErr: []string{"deployment/diabetes failed: engine trees: not an XGBoost model"}},
		{name: "timeout", st: serving.Status{SpecGeneration: 1, DesiredReplicas: 1, ReplicaStatuses: replicas(0, 1, 0, 0)}, timeout: "50ms",
			wantErr: []string{"timed out after 50ms waiting for deployment/diabetes: 0 of 1 new replicas ready (1 starting)", "ebb describe deployment diabetes"}},
		{name: "old server", timeout: "50ms",
			wantErr: []string{"timed out after 50ms", "never reported status.specGeneration"}},
		{name: "does not resolve", st: serving.Status{Failure: "model diabetes@champion does not resolve"}, timeout: "50ms",
			want: "deployment/diabetes created\nWaiting for deployment/diabetes: the control loop has not taken the new spec yet\n" +
				"  failing: model diabetes@champion does not resolve\n",
			wantErr: []string{"timed out after 50ms waiting for deployment/diabetes: the control loop has not taken the new spec yet; `ebb describe"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newCLIEnv(t)
			e.setStatus("diabetes", tt.st)
			args := []string{"deploy", "-f", writeFile(t, "d.yaml", diabetesYAML), "--wait"}
			if tt.timeout != "" {
				args = append(args, "--timeout", tt.timeout)
			}
			out, err := e.run(t, "", args...)
			if tt.wantErr == nil {
				if err != nil || out != tt.want {
					t.Errorf("deploy --wait = %q, %v; want %q", out, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("deploy --wait succeeded: %q", out)
			}
			if tt.want != "" && out != tt.want {
				t.Errorf("deploy --wait printed %q, want %q", out, tt.want)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := runEbb(t, "", "deploy", "-f", "x.yaml", "--timeout", "0s"); err == nil || !strings.Contains(err.Error(), "--timeout 0s must be above zero") {
		t.Errorf("--timeout 0s = %v", err)
	}
}

// TestUpDeployWait: against a real ebb up, deploying another model over
// the demo deployment while a replica serves reports the rollover, and
// --wait returns once the new model's replica serves alone; the status's
// reason then says the roll happened.
func TestUpDeployWait(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ebb up and replicas")
	}
	withWaitPoll(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	p := startUp(t, false, "--model-roots", root, "--exit-with-parent=false")
	p.infer(t) // one replica of the demo's model
	v2 := filepath.Join(root, "examples", "diabetes", "model-v2.json")
	spec := `{"name":"diabetes","spec":{"model":"` + v2 + `","engine":"trees","scaling":{"maxReplicas":4,"scaleToZeroAfter":"5m"}}}`
	out, err := runEbb(t, spec, "deploy", "-f", "-", "--wait", "--timeout", "1m", "--server", p.addr)
	if err != nil {
		t.Fatalf("deploy --wait: %v\n%s\nebb up:\n%s", err, out, p.out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if want := "deployment/diabetes configured: rolling over from "; !strings.HasPrefix(lines[0], want) || !strings.HasSuffix(lines[0], "/demo/diabetes.json to "+v2) {
		t.Errorf("first line %q, want %q... demo/diabetes.json to %s", lines[0], want, v2)
	}
	if want := "deployment/diabetes rolled out: 1 of 1 replicas ready, serving " + v2; lines[len(lines)-1] != want {
		t.Errorf("last line %q, want %q", lines[len(lines)-1], want)
	}
	detail, err := runEbb(t, "", "get", "deployment", "diabetes", "--server", p.addr)
	if err != nil || !strings.Contains(detail, "Reason: rolled replicas from ") || strings.Contains(detail, "(old)") {
		t.Errorf("get deployment after the roll = %v:\n%s", err, detail)
	}
}
