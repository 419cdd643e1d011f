// Package pgtest starts throwaway PostgreSQL clusters for tests: initdb into
// a temporary directory, postgres listening on a free loopback port, and a
// fresh database for every test that asks for one.
//
// Use it from a test binary's TestMain so that one cluster serves every test
// and is stopped when they end:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		dsn := pgtest.Start(t) // a new, empty database
//		...
//	}
//
// Without Main, Start still works but runs a cluster of its own for each
// call, stopped at the test's cleanup; that costs a second or two per test.
//
// The PostgreSQL 15 server binaries are looked for in $PGTEST_BINDIR, then
// /usr/lib/postgresql/15/bin (Debian's postgresql-15 package), then PATH.
// When they are missing Start skips the test with an install hint, unless
// the environment has CI=true, where it fails the test instead. When the
// tests run as root, the cluster runs as the "postgres" user, since postgres
// refuses to run as root.
package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// startTimeout bounds how long initdb plus server start may take.
const startTimeout = 60 * time.Second

// debianBinDir is where Debian's postgresql-15 package puts the server.
const debianBinDir = "/usr/lib/postgresql/15/bin"

var (
	// shared is the cluster Main manages; nil when Main is not in use.
	shared struct {
		sync.Mutex
		inMain bool
		c      *Cluster
		err    error
	}
	dbSeq atomic.Int64
)

// Main runs the tests of m and then stops the cluster that Start shared
// among them, if one was started. Call it from TestMain; the test binary
// exits with m.Run's status when TestMain returns.
func Main(m *testing.M) {
	shared.Lock()
	shared.inMain = true
	shared.Unlock()
	m.Run()
	shared.Lock()
	defer shared.Unlock()
	if shared.c != nil {
		if err := shared.c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop cluster: %v\n", err)
		}
		shared.c = nil
	}
}

// Start returns the DSN (postgres://...) of a new, empty database that the
// calling test owns; the database is dropped at the test's cleanup. Under
// Main the cluster is started on first use and shared by the test binary;
// otherwise each call starts a cluster of its own. Start skips the test when
// PostgreSQL is not installed, or fails it when CI=true.
func Start(t testing.TB) string {
	t.Helper()
	bin := findBinDir(t)
	c := cluster(t, bin)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE ends connections a test left open.
		if err := c.exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return c.DSN(name)
}

// cluster returns the shared cluster under Main, or a new one stopped at
// t's cleanup.
func cluster(t testing.TB, bin string) *Cluster {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if !shared.inMain {
		c, err := StartCluster(bin)
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		t.Cleanup(func() {
			if err := c.Stop(); err != nil {
				t.Errorf("pgtest: stop cluster: %v", err)
			}
		})
		return c
	}
	if shared.c == nil && shared.err == nil {
		shared.c, shared.err = StartCluster(bin)
	}
	if shared.err != nil {
		t.Fatalf("pgtest: %v", shared.err)
	}
	return shared.c
}

// findBinDir returns the directory holding initdb and postgres, or skips
// (fails under CI=true) the test when there is none.
func findBinDir(t testing.TB) string {
	t.Helper()
	dir, err := BinDir()
	if err == nil {
		return dir
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("pgtest: %v; CI must run the PostgreSQL tests", err)
	}
	t.Skipf("pgtest: %v", err)
	return ""
}

// BinDir returns the directory holding PostgreSQL's initdb and postgres:
// $PGTEST_BINDIR when set, else /usr/lib/postgresql/15/bin when it has
// them, else the directory of initdb on PATH. The error says how to install
// PostgreSQL.
func BinDir() (string, error) {
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if dir := os.Getenv("PGTEST_BINDIR"); dir != "" {
		if has(dir) {
			return dir, nil
		}
		return "", fmt.Errorf("PGTEST_BINDIR=%s has no initdb and postgres binaries: unset it to use %s (apt-get install postgresql-15)", dir, debianBinDir)
	}
	if has(debianBinDir) {
		return debianBinDir, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("PostgreSQL server binaries not found in %s or on PATH: install them with `apt-get install postgresql-15` or set PGTEST_BINDIR", debianBinDir)
}

// Cluster is one running, throwaway PostgreSQL cluster on a loopback port.
// Its superuser is "postgres", trusted without a password (any password a
// DSN gives is accepted).
type Cluster struct {
	// Port is the TCP port on 127.0.0.1 it listens on.
	Port int

	dir  string
	bin  string
	cred *syscall.Credential
	log  *lockedBuffer

	// mu guards the server process, which StopServer and StartServer
	// replace.
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when this cmd has exited

	stopOnce sync.Once
	stopErr  error
}

// NewCluster starts a cluster of the test's own, stopped and removed at
// its cleanup, for tests that stop and restart the server
// (Cluster.StopServer) and so must not share one. It skips the test when
// PostgreSQL is not installed, or fails it when CI=true.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := StartCluster(findBinDir(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("pgtest: stop cluster: %v", err)
		}
	})
	return c
}

// StartCluster initialises a cluster in a new temporary directory with the
// binaries in binDir and starts postgres on a free port of 127.0.0.1, with
// its unix socket inside that directory and durability (fsync) off. It
// returns once the server accepts connections. Call Stop when done; should
// the test binary die first, the server gets SIGKILL with it.
func StartCluster(binDir string) (*Cluster, error) {
	cred, uid, gid, err := credential()
	if err != nil {
		return nil, err
	}
	removeStale()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Cluster, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if cred != nil {
		if err := checkReachable(filepath.Dir(dir), uid, gid); err != nil {
			return fail(err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return fail(err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return fail(err)
		}
	}
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	initdb := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"--pgdata", data, "--username", "postgres", "--auth", "trust",
		"--encoding", "UTF8", "--locale", "C", "--no-sync", "--no-instructions")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb in %s: %v\n%s", data, err, out))
	}
	// A free port may be taken between choosing it and postgres binding it;
	// try a few.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return fail(err)
		}
		c := &Cluster{Port: port, dir: dir, bin: binDir, cred: cred, log: &lockedBuffer{}}
		if lastErr = c.startServer(ctx); lastErr == nil {
			return c, nil
		}
	}
	return fail(lastErr)
}

// dirPrefix starts the name of every cluster's temporary directory.
const dirPrefix = "pgtest-"

// removeStale removes the directories of clusters whose test binary died
// before it could stop them: postgres died with it (SIGKILL), so their
// postmaster.pid names a process that no longer exists. Directories without
// that file may be another binary's cluster being created, and are kept.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
		if err != nil {
			continue
		}
		first, _, _ := strings.Cut(string(b), "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(first))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(dir)
		}
	}
}

// checkReachable returns an error when a user with the given uid and gid
// (not root, and with no supplementary groups) cannot search dir or one of
// its parents.
func checkReachable(dir string, uid, gid int) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		var need os.FileMode = 0o001
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid {
			need = 0o100
		} else if ok && int(st.Gid) == gid {
			need = 0o010
		}
		if fi.Mode()&need == 0 {
			return fmt.Errorf("the postgres user cannot enter %s (mode %v), so it cannot run a cluster under it: set TMPDIR to a directory it can reach, such as /tmp", d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// credential returns the identity to run PostgreSQL as: nil (this process's)
// unless running as root, then the postgres user's.
func credential() (cred *syscall.Credential, uid, gid int, err error) {
	if os.Geteuid() != 0 {
		return nil, 0, 0, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("running as root, PostgreSQL must run as the postgres user, but: %v (install postgresql-15, which creates it)", err)
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return nil, 0, 0, err
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		return nil, 0, 0, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid, nil
}

// readyLine is what postgres logs once it accepts connections.
const readyLine = "database system is ready to accept connections"

// startServer starts postgres on c's data directory and port and returns
// once it accepts connections. c.mu must be held or c not yet shared.
func (c *Cluster) startServer(ctx context.Context) error {
	cmd := exec.Command(filepath.Join(c.bin, "postgres"),
		"-D", filepath.Join(c.dir, "data"),
		"-h", "127.0.0.1",
		"-p", strconv.Itoa(c.Port),
		"-k", c.dir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
		"-c", "lc_messages=C",
		"-c", "logging_collector=off",
	)
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	done := make(chan struct{})
	c.cmd, c.done = cmd, done
	ready := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			c.log.WriteLine(sc.Text())
			if !signalled && strings.Contains(sc.Text(), readyLine) {
				signalled = true
				close(ready)
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		<-scanned // Wait closes the pipe: read it all first
		cmd.Wait()
		close(done)
	}()
	select {
	case <-ready:
		return nil
	case <-done:
		return fmt.Errorf("postgres exited before it was ready:\n%s", c.log.String())
	case <-ctx.Done():
		c.kill()
		return fmt.Errorf("postgres not ready within %s:\n%s", startTimeout, c.log.String())
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// DSN returns the URL of database db in the cluster, as superuser.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// exec runs one statement in the postgres database.
func (c *Cluster) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// Log returns what the server has logged so far.
func (c *Cluster) Log() string { return c.log.String() }

// StopServer shuts the server down as an administrator would (a fast
// shutdown, SIGINT to the postmaster's PID: sessions are ended with
// SQLSTATE 57P01 and the data is checkpointed) and waits for it to exit,
// keeping the data directory; StartServer starts it again. Stopping a
// stopped server does nothing.
func (c *Cluster) StopServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
		return nil
	case <-time.After(30 * time.Second):
		c.kill()
		return fmt.Errorf("postgres %d did not shut down within 30s; killed it:\n%s", c.cmd.Process.Pid, c.log.String())
	}
}

// StartServer starts the server that StopServer stopped, on the same data
// directory and port, and returns once it accepts connections. Starting a
// running server is an error.
func (c *Cluster) StartServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
	default:
		return fmt.Errorf("postgres %d is running already", c.cmd.Process.Pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	return c.startServer(ctx)
}

// Stop shuts the server down at once (no checkpoint: the data is thrown
// away) and removes its directory. Calls after the first return the first
// call's result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		// SIGQUIT is PostgreSQL's immediate shutdown, as pg_ctl -m immediate.
		_ = c.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			c.kill()
		}
		c.stopErr = os.RemoveAll(c.dir)
	})
	return c.stopErr
}

// kill ends postgres and its children with SIGKILL and waits for it. c.mu
// must be held or c not yet shared.
func (c *Cluster) kill() {
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
}

// lockedBuffer collects log lines for error messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// maxLog bounds the log kept in memory.
const maxLog = 64 << 10

func (b *lockedBuffer) WriteLine(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > maxLog {
		rest := b.buf.Bytes()[b.buf.Len()-maxLog/2:]
		b.buf = *bytes.NewBuffer(append([]byte(nil), rest...))
	}
	b.buf.WriteString(s)
	b.buf.WriteByte('\n')
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
