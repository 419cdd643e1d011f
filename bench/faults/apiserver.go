package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
)

// APIServerRestart restarts the kube-apiserver of the test cluster under
// load. The cluster (internal/kubetest) can only run inside a Go test
// binary, so the case is the test TestAPIServerRestart
// (apiserver_test.go): Run builds this package's test binary, runs that one
// test with the ebb binary under test, and reads the result it writes.
type APIServerRestart struct{}

func (APIServerRestart) Name() string  { return "apiserver-restart" }
func (APIServerRestart) Title() string { return "10. The apiserver restarts, in the test cluster" }

// caseResult is what TestAPIServerRestart writes to $EBB_FAULTS_RESULT.
type caseResult struct {
	harness.Result
	Error string `json:"error,omitempty"`
}

// apiserverCaseTimeout bounds the test binary's run.
const apiserverCaseTimeout = 4 * time.Minute

func (APIServerRestart) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	test := filepath.Join(env.Work, "faults.test")
	env.Logf("building the fault suite's test binary (the cluster runs inside a test)")
	if err := buildTest(ctx, env, test); err != nil {
		return harness.Result{}, err
	}
	out := filepath.Join(env.Work, "apiserver-restart.json")
	vars := []string{"EBB_FAULTS_RESULT=" + out, "EBB_KUBETEST_EBB=" + env.Ebb}
	if env.Quick {
		vars = append(vars, "EBB_FAULTS_QUICK=1")
	}
	p, err := env.Start(harness.StartOptions{Name: "faults.test-apiserver-restart", Dir: filepath.Join(env.Root, "bench", "faults"), Env: vars},
		test, "-test.run=^TestAPIServerRestart$", "-test.count=1", "-test.v", "-test.timeout="+apiserverCaseTimeout.String())
	if err != nil {
		return harness.Result{}, err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		env.StopProc(p)
		return harness.Result{}, fmt.Errorf("the cluster case did not finish: %w; log tail:\n%s", ctx.Err(), p.LogTail(3000))
	}
	b, err := os.ReadFile(out)
	if errors.Is(err, os.ErrNotExist) {
		log := p.LogTail(1 << 20)
		if m := regexp.MustCompile(`(?m)^\s+apiserver_test\.go:\d+: (.*)\n--- SKIP`).FindStringSubmatch(log); m != nil {
			return harness.Result{}, fmt.Errorf("skipped: %s", strings.TrimSpace(m[1]))
		}
		if m := regexp.MustCompile(`(?m)^\s+\S+\.go:\d+: (kubetest: .*)$`).FindStringSubmatch(log); m != nil {
			return harness.Result{}, fmt.Errorf("the cluster did not start: %s", strings.TrimSpace(m[1]))
		}
		return harness.Result{}, fmt.Errorf("the cluster case wrote no result; log tail:\n%s", p.LogTail(3000))
	}
	if err != nil {
		return harness.Result{}, err
	}
	var r caseResult
	if err := json.Unmarshal(b, &r); err != nil {
		return harness.Result{}, fmt.Errorf("read %s: %w", out, err)
	}
	if r.Error != "" {
		return r.Result, errors.New(r.Error)
	}
	return r.Result, nil
}

// buildTest builds this package's test binary into dst.
func buildTest(ctx context.Context, env *harness.Env, dst string) error {
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", dst, "./bench/faults")
	cmd.Dir = env.Root
	cmd.Stdout, cmd.Stderr = env.Out, env.Out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build the test binary of ./bench/faults: %w", err)
	}
	return nil
}
