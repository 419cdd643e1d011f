package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/pgtest"
)

// TestPostgresStoreSurvivesRestart runs `ebb up` on a PostgreSQL store
// (EBB_STORE_DSN), creates a deployment, crashes ebb and starts it again
// with another, empty data dir: the deployment and its running replica come
// back from PostgreSQL alone.
func TestPostgresStoreSurvivesRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and ebb up twice")
	}
	dsn := pgtest.Start(t)
	t.Setenv("EBB_STORE_DSN", dsn) // startEbb's ebb up inherits it
	g := loadGolden(t)
	addr := freeAddr(t)
	firstDir, secondDir := t.TempDir(), t.TempDir()

	p := startEbb(t, addr, firstDir)
	d := diabetesSpec(t, serving.Scaling{MinReplicas: 1, MaxReplicas: 2})
	if code := p.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("create deployment: %d", code)
	}
	before := p.deployment("diabetes")
	st := p.waitStatus("diabetes", 30*time.Second, "1 ready replica", func(st serving.Status) bool { return st.ReadyReplicas == 1 })
	first := st.ReplicaStatuses[0]
	pid, err := replicaPID(context.Background(), first.Endpoint)
	if err != nil {
		t.Fatal(err)
	}

	p.kill()
	p = startEbb(t, addr, secondDir)
	after := p.deployment("diabetes")
	after.Status, before.Status = serving.Status{}, serving.Status{}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("deployment after restart on another data dir (-before +after):\n%s", diff)
	}
	st = p.waitStatus("diabetes", 30*time.Second, "the recovered replica ready", func(st serving.Status) bool { return st.ReadyReplicas == 1 })
	if len(st.ReplicaStatuses) != 1 || st.ReplicaStatuses[0].ID != first.ID {
		t.Errorf("after restart replicas are %v; want the recovered %s", ids(st), first.ID)
	}
	if got, code, body, err := infer(context.Background(), p.base, g.Rows[1]); err != nil || code != http.StatusOK || !near(got, g.Predictions[1]) {
		t.Fatalf("infer after restart: %v %d %s %v", got, code, body, err)
	}
	p.stop()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("replica %d still runs after ebb up exited", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, dir := range []string{firstDir, secondDir} {
		if _, err := os.Stat(filepath.Join(dir, "ebb.db")); !os.IsNotExist(err) {
			t.Errorf("ebb up with EBB_STORE_DSN made a SQLite store in %s (stat: %v); want PostgreSQL only", dir, err)
		}
	}
}

// TestPostgresStoreFlag checks that --store-dsn selects PostgreSQL over
// both EBB_STORE_DSN and the SQLite default: pointed at a server that is
// not there, ebb up exits saying so and makes no SQLite store.
func TestPostgresStoreFlag(t *testing.T) {
	t.Setenv("EBB_STORE_DSN", "")
	dir := t.TempDir()
	cmd := exec.Command(ebbBin, "up", "--addr", freeAddr(t), "--data-dir", dir,
		"--store-dsn", "postgres://ebb:hunter2@127.0.0.1:1/ebb?sslmode=disable&connect_timeout=5")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("ebb up with an unreachable --store-dsn exited 0; output:\n%s", out)
	}
	if !strings.Contains(string(out), "postgres: cannot connect to 127.0.0.1:1/ebb") {
		t.Errorf("ebb up output does not say it cannot reach the PostgreSQL store:\n%s", out)
	}
	if strings.Contains(string(out), "hunter2") {
		t.Errorf("ebb up output shows the DSN's password:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "ebb.db")); !os.IsNotExist(err) {
		t.Errorf("ebb up with --store-dsn made a SQLite store (stat: %v)", err)
	}
}
