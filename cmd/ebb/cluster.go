package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/sibling"
)

// clusterBinary is the cluster home's binary (cmd/ebb-cluster), which
// runs the operator and the gateway. It is apart from ebb so that ebb up
// and the CLI link none of Kubernetes' client libraries.
const clusterBinary = "ebb-cluster"

// clusterBinaryEnv names the ebb-cluster to run in place of the one beside
// ebb or on PATH.
const clusterBinaryEnv = "EBB_CLUSTER_BINARY"

// newClusterCmd is `ebb operator` or `ebb gateway`: it runs
// `ebb-cluster NAME` in this process's place (same PID, so a pod or a
// supervisor sees no difference) with its arguments as given. Flags,
// --help and errors are ebb-cluster's. short is the command's, as
// ebb-cluster has it.
func newClusterCmd(name, short string) *cobra.Command {
	return &cobra.Command{
		Use:   name + " [flags]",
		Short: short,
		Long: fmt.Sprintf(`%s.

ebb %s runs %s %s with the same arguments
(see ebb %s --help): the %s beside this ebb (make build
writes both to bin/), else the one on PATH, or $%s.
The ebb image has it.`, short, name, clusterBinary, name, name, clusterBinary, clusterBinaryEnv),
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			bin, err := findClusterBinary(name)
			if err != nil {
				return err
			}
			argv := append([]string{bin, name}, args...)
			if err := syscall.Exec(bin, argv, os.Environ()); err != nil {
				return fmt.Errorf("run %s: %w", bin, err)
			}
			return nil // not reached: Exec returns only on failure
		},
	}
}

// findClusterBinary returns the ebb-cluster that `ebb name` runs:
// $EBB_CLUSTER_BINARY, else the one beside ebb, else the one on PATH.
func findClusterBinary(name string) (string, error) {
	if p := os.Getenv(clusterBinaryEnv); p != "" {
		if !sibling.IsExecutable(p) {
			return "", fmt.Errorf("$%s is %s, which is not an executable file: give the path of ebb-cluster (go build ./cmd/ebb-cluster), or unset it", clusterBinaryEnv, p)
		}
		return filepath.Abs(p)
	}
	p, err := sibling.Find(clusterBinary)
	if err != nil {
		dir := "ebb's directory"
		if exe, err := os.Executable(); err == nil {
			dir = filepath.Dir(exe)
		}
		return "", fmt.Errorf("ebb %s runs %s, the cluster home's binary, and there is none beside this ebb (in %s) or on PATH: build both with make build (bin/ebb, bin/ebb-cluster) or run go build -o %s ./cmd/ebb-cluster, or set $%s to its path; the ebb image has it at /usr/local/bin/%s",
			name, clusterBinary, dir, dir, clusterBinaryEnv, clusterBinary)
	}
	return p, nil
}
