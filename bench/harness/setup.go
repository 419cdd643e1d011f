package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ebb-ml/ebb/internal/ebbtest"
)

// debPackages maps each thing the scenarios need to the Debian (bookworm)
// package that provides it. Binaries are checked on PATH, Python modules
// by importing them with the Debian interpreter.
var debPackages = []struct {
	binary, module, pkg string
}{
	{binary: "nginx", pkg: "nginx-light"},
	{binary: "haproxy", pkg: "haproxy"},
	{binary: "wrk", pkg: "wrk"},
	{binary: "taskset", pkg: "util-linux"},
	{module: "xgboost", pkg: "python3-xgboost"},
	{module: "numpy", pkg: "python3-numpy"},
	{module: "flask", pkg: "python3-flask"},
	{module: "gunicorn", pkg: "gunicorn"},
	{module: "fastapi", pkg: "python3-fastapi"},
	{module: "uvicorn", pkg: "python3-uvicorn"},
	{module: "uvloop", pkg: "python3-uvloop"},
	{module: "httptools", pkg: "python3-httptools"},
	{module: "sklearn", pkg: "python3-sklearn"},
	{module: "joblib", pkg: "python3-joblib"},
}

// EnsureTools installs with apt-get the Debian packages whose binaries or
// Python modules are missing. It needs root (or sudo) only when something
// is missing.
func EnsureTools(ctx context.Context, out io.Writer, python string) error {
	var missing []string
	for _, d := range debPackages {
		ok := true
		if d.binary != "" {
			_, err := exec.LookPath(d.binary)
			ok = err == nil
		} else {
			ok = exec.CommandContext(ctx, python, "-c", "import "+d.module).Run() == nil
		}
		if !ok {
			missing = append(missing, d.pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	fmt.Fprintf(out, "installing missing Debian packages: %s\n", strings.Join(missing, " "))
	var prefix []string
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("sudo"); err != nil {
			return fmt.Errorf("packages %s are missing and this is not root and has no sudo: install them with apt-get and run again", strings.Join(missing, " "))
		}
		prefix = []string{"sudo", "-n"}
	}
	run := func(args ...string) error {
		argv := append(append([]string{}, prefix...), args...)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = out, out
		return cmd.Run()
	}
	if err := run("apt-get", "update"); err != nil {
		return fmt.Errorf("apt-get update: %w", err)
	}
	if err := run(append([]string{"apt-get", "install", "-y", "--no-install-recommends"}, missing...)...); err != nil {
		return fmt.Errorf("apt-get install %s: %w", strings.Join(missing, " "), err)
	}
	return nil
}

// BuildEbb builds ./cmd/ebb from root into dst, stamped with the commit,
// and ./cmd/ebb-cluster and ./cmd/ebb-replica beside it, as make build
// does: the ebb up the scenarios start runs its replicas with that lean
// binary, and the kube scenarios run the operator from ebb-cluster.
func BuildEbb(ctx context.Context, root, dst string, out io.Writer) error {
	version := strings.TrimSpace(cmdOut("git", "-C", root, "rev-parse", "--short=12", "HEAD"))
	if version == "" || strings.Contains(version, " ") {
		version = "bench"
	}
	if filepath.Base(dst) != "ebb" {
		return fmt.Errorf("build ebb into %s: the binary must be named ebb, for ebb-cluster and ebb-replica to sit beside it", dst)
	}
	return ebbtest.BuildAll(ctx, root, filepath.Dir(dst), out, "-ldflags", "-X main.version="+version)
}

// BuildGo builds the Go package pkg (relative to root) into dst.
func BuildGo(ctx context.Context, root, pkg, dst string, out io.Writer, flags ...string) error {
	args := append(append([]string{"build", "-o", dst}, flags...), pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s: %w", pkg, err)
	}
	return nil
}

// FindRoot returns the directory above dir that holds the ebb module's
// go.mod.
func FindRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/ebb-ml/ebb\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("not inside the ebb repository: run the bench from the repository (make bench)")
		}
	}
}

// Locate returns the repository root above the working directory and the
// directory a command writes its reports to: out, or bench/ in the root
// when out is empty.
func Locate(out string) (root, outDir string, err error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", "", err
	}
	if root, err = FindRoot(wd); err != nil {
		return "", "", err
	}
	if out == "" {
		out = filepath.Join(root, "bench")
	}
	return root, out, nil
}
