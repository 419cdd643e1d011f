// Command ebbfaults runs ebb's fault suite (bench/faults) and writes
// bench/FAULTS.md and bench/faults.json. Run it from the repository with
// `make faults` (or `make faults QUICK=1` for a short run).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/bench/faults"
	"github.com/ebb-ml/ebb/bench/harness"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ebbfaults:", err)
		os.Exit(1)
	}
}

func run() error {
	reg, err := faults.Registry()
	if err != nil {
		return err
	}
	quick := flag.Bool("quick", false, "short run: shorter loads and smaller counts")
	only := flag.String("run", "all", "comma-separated cases to run: "+strings.Join(reg.Names(), ", "))
	out := flag.String("out", "", "directory for FAULTS.md and faults.json (default: bench/ in the repository)")
	keep := flag.Bool("keep", false, "keep the work directory (logs, data dirs)")
	ebbBin := flag.String("ebb", "", "use this ebb binary instead of building ./cmd/ebb from the working tree")
	flag.Parse()

	selected, err := reg.Select(*only)
	if err != nil {
		return err
	}
	root, outDir, err := harness.Locate(*out)
	if err != nil {
		return err
	}
	*out = outDir
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	started := time.Now()
	work, err := os.MkdirTemp("", "ebbfaults-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Println("work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	env := &harness.Env{Root: root, Work: work, Ebb: filepath.Join(work, "ebb"), Quick: *quick, Out: os.Stdout}
	if *ebbBin != "" {
		env.Ebb = *ebbBin
	} else {
		env.Logf("building ebb")
		if err := harness.BuildEbb(ctx, root, env.Ebb, os.Stdout); err != nil {
			return err
		}
	}
	cmd := "make faults"
	if *quick {
		cmd = "make faults QUICK=1"
	}
	if *ebbBin != "" {
		cmd += " FAULTSFLAGS=-ebb=" + *ebbBin
	}
	if *only != "all" {
		cmd += " (-run " + *only + ")"
	}
	report := &faults.Report{
		GeneratedAt: started.UTC(),
		Command:     cmd,
		Quick:       *quick,
		Machine:     harness.DescribeMachine(runtime.NumCPU()),
		Versions:    []harness.KV{{Name: "ebb", Value: ebbVersion(env.Ebb)}, {Name: "Go", Value: runtime.Version()}},
		NotDone:     faults.NotDone,
	}
	report.Cases = faults.RunCases(ctx, env, selected, 5*time.Minute)
	env.StopAll()
	report.Seconds = time.Since(started).Seconds()
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; nothing written: %w", ctx.Err())
	}
	md, js, err := harness.Write(report, *out, "FAULTS.md", "faults.json")
	if err != nil {
		return err
	}
	env.Logf("wrote %s and %s in %.0f s", md, js, report.Seconds)
	failed := 0
	for _, c := range report.Cases {
		for _, g := range c.Goals {
			if !g.Met {
				failed++
			}
		}
		if c.Error != "" {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d goal(s) not met or case(s) failed; see FAULTS.md", failed)
	}
	return nil
}

// ebbVersion returns the client line of `ebb version`.
func ebbVersion(bin string) string {
	out, _ := exec.Command(bin, "version").Output()
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(line, "Client: "))
}
