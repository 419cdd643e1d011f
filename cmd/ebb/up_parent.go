package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

// Stopping ebb up. SIGINT (Ctrl-C), SIGTERM and SIGHUP (its terminal
// closed) make it drain and stop its replicas. Under `go run`, though,
// SIGTERM reaches the go command, which dies and leaves ebb up running
// under init with its replicas: so under go run, ebb up also stops when
// the process that started it exits (--exit-with-parent). It polls its
// parent's PID rather than ask the kernel for a signal at the parent's
// death (prctl PR_SET_PDEATHSIG): that signal comes when the parent's
// thread that started ebb exits, which in a Go parent may be long before
// the parent itself, and it exists on Linux only.

// parentPoll is how often ebb up checks that its parent still runs.
const parentPoll = 250 * time.Millisecond

func addExitWithParentFlag(f *pflag.FlagSet, on *bool) {
	exe, _ := os.Executable()
	f.BoolVar(on, "exit-with-parent", underGoRun(exe), "stop (draining, replicas stopped) when the process that started ebb up exits; default on under go run, which does not pass SIGTERM on to ebb")
}

// underGoRun reports whether exe, this process's executable, is one `go
// run` built: go run links it into a temporary directory named go-build*
// and starts it from there.
func underGoRun(exe string) bool {
	for dir := filepath.Dir(exe); dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
		if strings.HasPrefix(filepath.Base(dir), "go-build") {
			return true
		}
	}
	return false
}

// stopSignals are the signals on which ebb up drains and stops: SIGINT,
// SIGTERM and SIGHUP, unless SIGHUP is ignored (nohup), which must stay so.
func stopSignals() []os.Signal {
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	return sigs
}

// withParent returns a context that ends with ctx or once this process's
// parent has exited (its parent PID changed: it was reparented), which log
// says.
func withParent(ctx context.Context, log *slog.Logger) (context.Context, context.CancelFunc) {
	return watchParent(ctx, os.Getppid(), os.Getppid, parentPoll, log)
}

// watchParent is withParent for a process whose parent was ppid when it
// started, asking getppid every poll.
func watchParent(ctx context.Context, ppid int, getppid func() int, poll time.Duration, log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(poll)
		defer t.Stop()
		for {
			if now := getppid(); now != ppid {
				log.Warn("the process that started ebb up exited (--exit-with-parent): stopping", "parent", ppid)
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return ctx, cancel
}
