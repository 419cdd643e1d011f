package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// APIServerRestart says when RestartAPIServer stopped the kube-apiserver,
// started it again, and when it answered /readyz.
type APIServerRestart struct {
	Stopped, Started, Ready time.Time
	// OldPID and NewPID are the apiserver processes before and after.
	OldPID, NewPID int
}

// apiserverGrace is how long a SIGTERMed apiserver may take to exit before
// SIGKILL.
const apiserverGrace = 5 * time.Second

// RestartOptions say how RestartAPIServer restarts the apiserver.
type RestartOptions struct {
	// DownFor is how long the apiserver stays down.
	DownFor time.Duration
	// Kill stops it with SIGKILL, as a crash, rather than SIGTERM (and
	// SIGKILL after 5 s), as an upgrade or a node drain would.
	Kill bool
}

// RestartAPIServer stops the kube-apiserver process by its PID, keeps it
// down for o.DownFor, starts it again with the same flags on the same port,
// certificates and etcd (whose data are kept), and waits until it answers
// /readyz. Everything else — etcd, the controller manager, the scheduler,
// kwok, the fake kubelet and the pods' processes — keeps running and must
// reconnect as it would to a real restarted apiserver. Its log continues in
// logs/kube-apiserver.log.
//
// Every test of the binary shares the apiserver: a test that restarts it
// must not run in parallel with others (no t.Parallel).
func (c *Cluster) RestartAPIServer(ctx context.Context, o RestartOptions) (APIServerRestart, error) {
	var r APIServerRestart
	c.procMu.Lock()
	idx := -1
	for i, p := range c.procs {
		if p.name == "kube-apiserver" {
			idx = i
		}
	}
	if idx < 0 {
		c.procMu.Unlock()
		return r, errors.New("kubetest: no kube-apiserver process: is the cluster stopped?")
	}
	old := c.procs[idx]
	c.procMu.Unlock()

	r.OldPID = old.cmd.Process.Pid
	if o.Kill {
		_ = old.cmd.Process.Kill()
		<-old.done
	} else {
		old.stop(apiserverGrace)
	}
	r.Stopped = time.Now()
	t := time.NewTimer(o.DownFor)
	select {
	case <-ctx.Done():
		t.Stop()
	case <-t.C:
	}
	// Start it again even when ctx ended: the cluster must not be left
	// without an apiserver.
	if f, err := os.OpenFile(old.log, os.O_WRONLY|os.O_APPEND, 0); err == nil {
		fmt.Fprintf(f, "\n==== kubetest: apiserver (pid %d) stopped at %s, started again after %s ====\n", r.OldPID, r.Stopped.Format(time.RFC3339Nano), o.DownFor)
		f.Close()
	}
	p, err := spawn(c.Dir, old.name, old.path, old.args, os.O_APPEND)
	if err != nil {
		return r, fmt.Errorf("kubetest: restart kube-apiserver: %w", err)
	}
	r.Started, r.NewPID = time.Now(), p.cmd.Process.Pid
	c.procMu.Lock()
	c.procs[idx] = p
	c.procMu.Unlock()
	if err := c.waitReady(c.config.TLSClientConfig.CAData, 60*time.Second); err != nil {
		return r, fmt.Errorf("kubetest: restarted kube-apiserver: %w", err)
	}
	r.Ready = time.Now()
	return r, nil
}
