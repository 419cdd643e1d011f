package faults

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/artifact/artifacttest"
	"github.com/ebb-ml/ebb/internal/store/pgtest"
)

// TestFaultsQuick runs the quick mode of every case of the fault suite but
// the cluster's (TestAPIServerRestart has it) against ebb built from this
// tree and checks every goal: 0 failed requests when one replica of two
// dies, when all die (held), after ebb itself restarts, while the store
// stalls and while S3 is down during a cold start (held); idle, slow-header
// and slow-body connections cut by their timeouts without hurting other
// clients or counting as demand; RSS under the caps for oversized bodies
// and shapes; absurd replica counts refused and replica processes capped;
// nothing left behind. Each case is bounded in seconds and requests (about
// 80 s in all on 2 cores, plus the build).
func TestFaultsQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ebb up and its replicas; skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := harness.FindRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	work := t.TempDir()
	var log strings.Builder
	env := &harness.Env{Root: root, Work: work, Ebb: filepath.Join(work, "ebb"), Quick: true, Out: &logWriter{t: t}}
	// EBB_FAULTS_BIN names a prebuilt ebb to test instead of this tree's.
	if bin := os.Getenv("EBB_FAULTS_BIN"); bin != "" {
		env.Ebb = bin
	} else if err := harness.BuildGo(ctx, root, "./cmd/ebb", env.Ebb, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	defer env.StopAll()
	reg, err := Registry()
	if err != nil {
		t.Fatal(err)
	}
	names := quickCases(reg.Names(), t)
	// EBB_FAULTS_CASES (comma-separated) runs only those cases.
	if only := os.Getenv("EBB_FAULTS_CASES"); only != "" {
		names = strings.Split(only, ",")
	}
	cases, err := reg.Select(strings.Join(names, ","))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, o := range RunCases(ctx, env, cases, 60*time.Second) {
		t.Run(o.Name, func(t *testing.T) {
			if o.Error != "" {
				t.Fatalf("case failed: %s", o.Error)
			}
			if len(o.Goals) == 0 {
				t.Fatal("no goals reported")
			}
			for _, g := range o.Goals {
				if !g.Met {
					t.Errorf("goal %q (%s) not met: %s", g.Name, g.Target, g.Detail)
				}
			}
			if len(o.Leftovers) > 0 {
				t.Errorf("processes left behind: %v", o.Leftovers)
			}
		})
	}
	t.Logf("cases took %s", time.Since(start).Round(time.Second))
}

// quickCases returns the cases TestFaultsQuick runs: all but the cluster's
// (TestAPIServerRestart), and without the ones whose server is not
// installed (PostgreSQL for the store stall, versitygw for the S3 outage),
// which fail the test instead when CI=true.
func quickCases(all []string, t *testing.T) []string {
	missing := map[string]string{}
	if _, err := pgtest.BinDir(); err != nil {
		missing["store-stall"] = err.Error()
	}
	if _, ok := artifacttest.VersityGWPath(); !ok {
		missing["s3-outage"] = "versitygw is not installed (hack/install-versitygw.sh)"
	}
	var out []string
	for _, name := range all {
		if name == "apiserver-restart" {
			continue
		}
		if why, ok := missing[name]; ok {
			if os.Getenv("CI") == "true" {
				t.Errorf("%s: the %s case cannot run", why, name)
			} else {
				t.Logf("%s: %s skipped", why, name)
			}
			continue
		}
		out = append(out, name)
	}
	return out
}

// logWriter sends the harness's progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w *logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestLoadStats(t *testing.T) {
	t0 := time.Now()
	l := &Load{events: []event{
		{sent: t0, at: t0.Add(10 * time.Millisecond), code: 200},
		{sent: t0.Add(time.Second), at: t0.Add(1100 * time.Millisecond), code: 503, err: "HTTP 503"},
		{sent: t0.Add(2 * time.Second), at: t0.Add(2100 * time.Millisecond), code: 0, err: "reset"},
		{sent: t0.Add(3 * time.Second), at: t0.Add(3500 * time.Millisecond), code: 200},
	}}
	all := l.Stats(time.Time{}, time.Time{})
	if all.OK != 2 || all.Failed != 2 || all.Codes[503] != 1 || all.Codes[0] != 1 || all.FirstError != "HTTP 503" || all.MaxLatency != 500*time.Millisecond {
		t.Errorf("Stats(all) = %+v", all)
	}
	if got := all.codes(); got != "transport error ×1, 503 ×1" {
		t.Errorf("codes() = %q", got)
	}
	w := l.Stats(t0.Add(time.Second), t0.Add(3*time.Second))
	if w.OK != 0 || w.Failed != 2 {
		t.Errorf("Stats(window) = %+v", w)
	}
	if got := l.FirstOKAfter(t0.Add(time.Millisecond)); !got.Equal(t0.Add(3500 * time.Millisecond)) {
		t.Errorf("FirstOKAfter = %v", got.Sub(t0))
	}
	if got := l.LastFailure(); !got.Equal(t0.Add(2100 * time.Millisecond)) {
		t.Errorf("LastFailure = %v", got.Sub(t0))
	}
}

func TestVmHWMOfSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	n, err := vmHWM(os.Getpid())
	if err != nil || n <= 0 {
		t.Fatalf("vmHWM(self) = %d, %v", n, err)
	}
	if hostPort("http://127.0.0.1:1234/x") != "127.0.0.1:1234" {
		t.Error("hostPort")
	}
}

func TestRegistryOrder(t *testing.T) {
	reg, err := Registry()
	if err != nil {
		t.Fatal(err)
	}
	want := "kill-one,kill-all,kill-ebb,connections,bodies,shapes,replicas,store-stall,s3-outage,apiserver-restart"
	if got := strings.Join(reg.Names(), ","); got != want {
		t.Errorf("cases = %s, want %s", got, want)
	}
}
