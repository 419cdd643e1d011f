package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// asEbbEnv makes the test binary run as ebb, with its arguments, instead
// of running the tests.
const asEbbEnv = "EBB_TEST_RUN_AS_EBB"

// runAsEbb runs ebb's main and exits when $EBB_TEST_RUN_AS_EBB is set.
func runAsEbb() {
	if os.Getenv(asEbbEnv) == "" {
		return
	}
	os.Args[0] = "ebb"
	main()
	os.Exit(0)
}

// execEbb runs the test binary as ebb with args and env (and nothing else
// of the test's environment but PATH's absence), and returns its PID, its
// output and its exit error.
func execEbb(t *testing.T, env []string, args ...string) (int, string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append([]string{asEbbEnv + "=1", "PATH=" + t.TempDir()}, env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the test binary as ebb: %v", err)
	}
	err := cmd.Wait()
	return cmd.Process.Pid, out.String(), err
}

// TestClusterCommands checks that `ebb operator` and `ebb gateway` run
// ebb-cluster in ebb's place (the same process) with their arguments
// untouched, --help included, and say how to get ebb-cluster without one.
func TestClusterCommands(t *testing.T) {
	dir := t.TempDir()
	// A stand-in ebb-cluster that prints its PID and arguments.
	fake := filepath.Join(dir, "ebb-cluster")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"$$ $0 $*\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		env     []string
		args    []string
		want    string // the stand-in's arguments
		wantErr []string
	}{
		{name: "operator", env: []string{clusterBinaryEnv + "=" + fake}, args: []string{"operator", "--addr", ":9", "-n", "ml", "--help"},
			want: fake + " operator --addr :9 -n ml --help"},
		{name: "gateway", env: []string{clusterBinaryEnv + "=" + fake}, args: []string{"gateway", "--bogus-flag=x"},
			want: fake + " gateway --bogus-flag=x"},
		{name: "on PATH", env: []string{"PATH=" + dir}, args: []string{"operator"}, want: fake + " operator"},
		{name: "missing", args: []string{"gateway", "--help"},
			wantErr: []string{"ebb gateway runs ebb-cluster", "make build", "go build -o", "./cmd/ebb-cluster", "$" + clusterBinaryEnv, "the ebb image has it"}},
		{name: "not executable", env: []string{clusterBinaryEnv + "=" + notExec}, args: []string{"operator"},
			wantErr: []string{"$" + clusterBinaryEnv + " is " + notExec + ", which is not an executable file"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pid, out, err := execEbb(t, tt.env, tt.args...)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("ebb %s succeeded: %s", strings.Join(tt.args, " "), out)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(out, w) {
						t.Errorf("ebb %s said %q; want it to say %q", strings.Join(tt.args, " "), out, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ebb %s: %v\n%s", strings.Join(tt.args, " "), err, out)
			}
			if want := fmt.Sprintf("%d %s\n", pid, tt.want); out != want {
				t.Errorf("ebb %s ran %q; want %q (ebb-cluster in ebb's own process)", strings.Join(tt.args, " "), out, want)
			}
		})
	}
}
