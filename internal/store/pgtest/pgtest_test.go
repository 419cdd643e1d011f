package pgtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

// TestStart checks that each test gets its own empty database on one shared
// cluster, reachable over loopback TCP, with fsync off.
func TestStart(t *testing.T) {
	ctx := context.Background()
	var dsns []string
	for _, name := range []string{"first", "second"} {
		t.Run(name, func(t *testing.T) {
			dsn := Start(t)
			dsns = append(dsns, dsn)
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatalf("connect %s: %v", dsn, err)
			}
			defer conn.Close(ctx)
			var tables int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables); err != nil {
				t.Fatal(err)
			}
			if tables != 0 {
				t.Errorf("new database has %d tables, want 0", tables)
			}
			// Left behind on purpose: the next subtest must not see it.
			if _, err := conn.Exec(ctx, `CREATE TABLE leftover (x int)`); err != nil {
				t.Fatal(err)
			}
			var fsync, listen string
			if err := conn.QueryRow(ctx, `SELECT current_setting('fsync'), current_setting('listen_addresses')`).Scan(&fsync, &listen); err != nil {
				t.Fatal(err)
			}
			if fsync != "off" || listen != "127.0.0.1" {
				t.Errorf("fsync, listen_addresses = %q, %q; want off, 127.0.0.1", fsync, listen)
			}
		})
	}
	if len(dsns) == 2 && dsns[0] == dsns[1] {
		t.Errorf("two tests got the same database %s", dsns[0])
	}
	shared.Lock()
	c := shared.c
	shared.Unlock()
	if c == nil {
		t.Skip("no shared cluster (PostgreSQL not installed)")
	}
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname ~ '^t[0-9]+_[0-9]+$'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d test databases left after their tests ended, want 0", n)
	}
}

// TestStopRemovesCluster checks that a cluster of its own stops and removes
// its directory.
func TestStopRemovesCluster(t *testing.T) {
	bin := findBinDir(t)
	c, err := StartCluster(bin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.exec(ctx, `SELECT 1`); err != nil {
		t.Fatalf("query before Stop: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s after Stop: %v, want it gone", c.dir, err)
	}
	if err := c.exec(ctx, `SELECT 1`); err == nil {
		t.Errorf("query after Stop succeeded, want an error")
	}
	if c.cmd.ProcessState == nil {
		t.Errorf("postgres process not reaped after Stop")
	}
}

// TestStopServerKeepsData checks that StopServer stops the server, which
// then refuses connections, and that StartServer starts it again on the
// same port with the data it had.
func TestStopServerKeepsData(t *testing.T) {
	c := NewCluster(t)
	ctx := context.Background()
	if err := c.exec(ctx, `CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	first := c.cmd.Process.Pid
	if err := c.StopServer(); err != nil {
		t.Fatalf("StopServer: %v", err)
	}
	if err := syscall.Kill(first, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("postgres %d after StopServer: kill -0 = %v, want it gone", first, err)
	}
	if err := c.exec(ctx, `SELECT 1`); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("query with the server stopped = %v, want connection refused", err)
	}
	if err := c.StopServer(); err != nil {
		t.Errorf("second StopServer = %v, want nil", err)
	}
	port := c.Port
	if err := c.StartServer(); err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	if c.Port != port {
		t.Errorf("port after StartServer = %d, want %d", c.Port, port)
	}
	if err := c.StartServer(); err == nil {
		t.Errorf("StartServer on a running server succeeded, want an error")
	}
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var x int
	if err := conn.QueryRow(ctx, `SELECT x FROM kept`).Scan(&x); err != nil || x != 42 {
		t.Errorf("kept row after restart = %d, %v; want 42", x, err)
	}
}

// TestKilledBinaryLeavesNoServer kills (SIGKILL) a test binary that runs a
// cluster: its postgres must die with it, and the next cluster's start
// removes the directory left behind.
func TestKilledBinaryLeavesNoServer(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") == "1" {
		c, err := StartCluster(findBinDir(t))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("cluster %d %s\n", c.cmd.Process.Pid, c.dir)
		select {} // until killed
	}
	bin := findBinDir(t)
	tmp := t.TempDir()
	for _, d := range []string{tmp, filepath.Dir(tmp)} {
		if err := os.Chmod(d, 0o755); err != nil { // let the postgres user in
			t.Fatal(err)
		}
	}
	t.Setenv("TMPDIR", tmp)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledBinaryLeavesNoServer$", "-test.v")
	cmd.Env = append(os.Environ(), "PGTEST_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	var pid int
	var dir string
	var lines []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if _, err := fmt.Sscanf(sc.Text(), "cluster %d %s", &pid, &dir); err == nil {
			break
		}
	}
	if pid == 0 {
		t.Fatalf("child test printed no cluster:\n%s", strings.Join(lines, "\n"))
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("postgres %d not running while its test binary runs: %v", pid, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("postgres %d still runs 10s after its test binary was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("stale cluster directory %s: %v; want it left behind until the next start", dir, err)
	}
	c, err := StartCluster(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("stale cluster directory %s after the next start: %v, want it removed", dir, err)
	}
	if !strings.HasPrefix(c.dir, tmp) {
		t.Errorf("cluster directory %s is not under TMPDIR %s", c.dir, tmp)
	}
}

func TestCheckReachable(t *testing.T) {
	const uid, gid = 4242, 4343 // owns nothing here
	for _, tt := range []struct {
		name    string
		mode    os.FileMode
		wantErr bool
	}{
		{"others may search", 0o711, false},
		{"private", 0o700, true},
		{"group only", 0o750, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			if err := os.Chmod(filepath.Dir(parent), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(parent, tt.mode); err != nil {
				t.Fatal(err)
			}
			sub := filepath.Join(parent, "sub")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			err := checkReachable(sub, uid, gid)
			if (err != nil) != tt.wantErr {
				t.Errorf("checkReachable(dir under a %v dir) = %v, want error: %v", tt.mode, err, tt.wantErr)
			}
		})
	}
}
