package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// replicaIDs waits until the deployment has n replicas whose handles are
// stored (their processes run) and returns their IDs.
func (e *upEnv) replicaIDs(t *testing.T, name string, n int) []string {
	t.Helper()
	var ids []string
	waitFor(t, "replicas running", func() bool {
		hs, err := e.st.ListReplicas(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ids = nil
		for _, h := range hs {
			if h.Spec.Deployment == name {
				ids = append(ids, h.Spec.ID)
			}
		}
		return len(ids) == n
	})
	slices.Sort(ids)
	return ids
}

// The replica scripts get `ebb replica`'s flags as $0...: $3 is --id's.
const chattyReplica = `echo "replica $3 starting"; echo "replica $3 loading"; exec sleep 60`

func TestCLILogs(t *testing.T) {
	e := newUpEnv(t, chattyReplica)
	e.mustRun(t, `{"name":"web","spec":{"model":"m.json","engine":"echo","scaling":{"minReplicas":2,"maxReplicas":2}}}`, "deploy", "-f", "-")
	ids := e.replicaIDs(t, "web", 2)
	waitFor(t, "both replicas' output", func() bool {
		out, _ := runEbb(t, "", "logs", "web", "--server", e.url)
		return strings.Count(out, "loading") == 2
	})

	out := e.mustRun(t, "", "logs", "web")
	var want []string
	for _, id := range ids {
		want = append(want, "["+id+"] replica "+id+" starting", "["+id+"] replica "+id+" loading")
	}
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("ebb logs web:\n%s\nwant the lines %q", out, want)
	}
	if out := e.mustRun(t, "", "logs", "web", "--replica", ids[1], "--tail", "1"); out != "replica "+ids[1]+" loading\n" {
		t.Errorf("ebb logs --replica --tail 1 = %q", out)
	}
	if out := e.mustRun(t, "", "logs", "web", "--replica", ids[0], "--tail", "-1"); out != "replica "+ids[0]+" starting\nreplica "+ids[0]+" loading\n" {
		t.Errorf("ebb logs --tail -1 = %q", out)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"logs", "web", "--replica", "web-nope"}, `deployment "web" has no replica "web-nope"`},
		{[]string{"logs", "nope"}, `deployment "nope" not found`},
		{[]string{"logs", "web", "--tail", "0"}, "--tail 0 must be a number of lines from 1 up, or -1"},
	} {
		if _, err := runEbb(t, "", append(tt.args, "--server", e.url)...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ebb %v = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}

	// describe shows what the control loop decided, with reasons.
	desc := e.mustRun(t, "", "describe", "deployment", "web")
	for _, w := range []string{"ScaledUp", "desired replicas 0 → 2", "ReplicaStarted", ids[0], ids[1]} {
		if !strings.Contains(desc, w) {
			t.Errorf("describe does not show %q:\n%s", w, desc)
		}
	}
	if out := e.mustRun(t, "", "version"); !strings.Contains(out, "Server: "+version+" (ebb up) at "+e.url) {
		t.Errorf("ebb version against ebb up:\n%s", out)
	}
}

// TestCLILogsFollow follows a replica until it exits: ebb logs -f ends by
// itself.
func TestCLILogsFollow(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "go-on")
	e := newUpEnv(t, `echo "replica $3 up"; while [ ! -e `+gate+` ]; do sleep 0.02; done; echo "replica $3 done"`)
	e.mustRun(t, `{"name":"job","spec":{"model":"m.json","engine":"echo","scaling":{"minReplicas":1,"maxReplicas":1}}}`, "deploy", "-f", "-")
	id := e.replicaIDs(t, "job", 1)[0]
	waitFor(t, "the replica's first line", func() bool {
		out, _ := runEbb(t, "", "logs", "job", "--replica", id, "--server", e.url)
		return out != ""
	})

	b := runBackground(t, "logs", "job", "-f", "--server", e.url)
	waitFor(t, "the followed first line", func() bool { return strings.Contains(b.out.String(), "up") })
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-b.done:
		if err != nil {
			t.Fatalf("ebb logs -f: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("ebb logs -f did not end when the replica exited; printed %q", b.out)
	}
	if want := "[" + id + "] replica " + id + " up\n[" + id + "] replica " + id + " done\n"; b.out.String() != want {
		t.Errorf("followed %q, want %q", b.out, want)
	}
}

// TestCLILogsFollowCtrlC: Ctrl-C ends a follow of a replica that runs on.
func TestCLILogsFollowCtrlC(t *testing.T) {
	e := newUpEnv(t, chattyReplica)
	e.mustRun(t, `{"name":"web","spec":{"model":"m.json","engine":"echo","scaling":{"minReplicas":1,"maxReplicas":1}}}`, "deploy", "-f", "-")
	id := e.replicaIDs(t, "web", 1)[0]
	waitFor(t, "output", func() bool {
		out, _ := runEbb(t, "", "logs", "web", "--server", e.url)
		return strings.Contains(out, "loading")
	})
	out, _, stop := startEbb(t, "logs", "web", "--replica", id, "-f", "--server", e.url)
	waitFor(t, "the followed lines", func() bool { return strings.Contains(out.String(), "loading") })
	if err := stop(); err != nil {
		t.Errorf("ebb logs -f after Ctrl-C: %v, want nil", err)
	}
}
