package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/artifact/file"
	"github.com/ebb-ml/ebb/internal/control"
	"github.com/ebb-ml/ebb/internal/home"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/replica/process"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// TestMain points the CLI at a config file of its own, so that a
// developer's contexts never leak into the tests.
func TestMain(m *testing.M) {
	runAsEbb() // the test binary as ebb, for tests that exec it (cluster_test.go)
	dir, err := os.MkdirTemp("", "ebb-cli-test")
	if err != nil {
		panic(err)
	}
	os.Setenv(configEnv, filepath.Join(dir, "config.yaml"))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// isolate gives a test its own config file and clears $EBB_SERVER; it
// returns the config file's path.
func isolate(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ebb", "config.yaml")
	t.Setenv(configEnv, path)
	t.Setenv(serverEnv, "")
	return path
}

// fullEnv serves the admin API as a control plane does, over a real SQLite
// store and registry: deployments with canned statuses, models, canned
// events and the version. It records the Authorization header of the
// latest request.
type fullEnv struct {
	st  *sqlite.Store
	svc *registry.Service
	ctl *cliController
	url string

	mu     sync.Mutex
	events map[string][]serving.Event
	auth   string
}

func newFullEnv(t *testing.T) *fullEnv {
	t.Helper()
	isolate(t)
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	arts, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &fullEnv{st: st, ctl: &cliController{statuses: map[string]serving.Status{}}, events: map[string][]serving.Event{}}
	e.svc = registry.NewService(st, home.Artifacts{Store: arts}, registry.Options{Validator: home.ValidateModel})
	h := api.New(st, e.ctl, nil)
	h.MountModels(e.svc)
	h.MountEvents(api.EventsFunc(func(_ context.Context, name string) ([]serving.Event, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.events[name], nil
	}))
	h.MountVersion(api.VersionInfo{Version: "v9.9.9", Home: api.HomeCluster})
	h.MountPools(st)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.auth = r.Header.Get("Authorization")
		e.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("EBB_USER", "tester")
	e.url = srv.URL
	return e
}

func (e *fullEnv) run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	return runEbb(t, stdin, append(args, "--server", e.url)...)
}

func (e *fullEnv) mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := e.run(t, stdin, args...)
	if err != nil {
		t.Fatalf("ebb %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (e *fullEnv) setStatus(name string, st serving.Status) {
	e.ctl.mu.Lock()
	defer e.ctl.mu.Unlock()
	e.ctl.statuses[name] = st
}

func (e *fullEnv) lastAuth() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.auth
}

// upEnv is the admin API of ebb up as cmd/ebb/up.go wires it: a real
// control loop over the process backend, with the admin API ebb up serves (newAdminAPI). Its
// replicas run script (sh -c) instead of `ebb replica`: they write logs
// but never report ready, which is all these tests need.
type upEnv struct {
	st  *sqlite.Store
	ctl *control.Controller
	url string
}

func newUpEnv(t *testing.T, script string) *upEnv {
	t.Helper()
	isolate(t)
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	backend, err := process.New(process.Options{Command: []string{"sh", "-c", script}, LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctl := control.New(st, backend, &routing.Table{}, control.Options{
		Logger:       slog.New(slog.DiscardHandler),
		DrainTimeout: time.Second,
		MinBackoff:   time.Hour, // a replica that ends is not replaced during a test
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ctl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		ctl.Wait()
	})
	<-ctl.Loaded()
	admin := home.NewAdminAPI(home.AdminParts{Store: st, Ctl: ctl, Events: ctl, Logs: ctl, Home: api.HomeUp, Version: version}, nil)
	srv := httptest.NewServer(admin)
	t.Cleanup(srv.Close)
	return &upEnv{st: st, ctl: ctl, url: srv.URL}
}

func (e *upEnv) mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := runEbb(t, stdin, append(args, "--server", e.url)...)
	if err != nil {
		t.Fatalf("ebb %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// waitFor polls cond until it holds or 20s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// bgEbb is `ebb args...` running in the background.
type bgEbb struct {
	out, errOut *syncBuffer
	done        chan error // receives the command's error once it ended
	stop        context.CancelFunc
}

// startEbb runs `ebb args...` in the background until the returned cancel
// is called (Ctrl-C); it returns the live stdout and stderr, and cancel
// returns the command's error once it ended.
func startEbb(t *testing.T, args ...string) (stdout, stderr *syncBuffer, cancel func() error) {
	t.Helper()
	b := runBackground(t, args...)
	var once sync.Once
	var err error
	cancel = func() error {
		once.Do(func() {
			b.stop()
			select {
			case err = <-b.done:
			case <-time.After(10 * time.Second):
				t.Errorf("ebb %v did not end after its context was cancelled", args)
			}
		})
		return err
	}
	t.Cleanup(func() { _ = cancel() })
	return b.out, b.errOut, cancel
}

func runBackground(t *testing.T, args ...string) *bgEbb {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	root := newRootCmd()
	b := &bgEbb{out: &syncBuffer{}, errOut: &syncBuffer{}, done: make(chan error, 1), stop: stop}
	root.SetArgs(args)
	root.SetIn(strings.NewReader(""))
	root.SetOut(b.out)
	root.SetErr(b.errOut)
	go func() { b.done <- root.ExecuteContext(ctx) }()
	t.Cleanup(stop)
	return b
}
