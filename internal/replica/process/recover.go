package process

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/serving"
	"golang.org/x/sys/unix"
)

// Ready waits for the replica's readiness notice on its pipe. A replica that
// was recovered has no pipe; Ready then asks the replica itself.
func (b *Backend) Ready(ctx context.Context, h replica.Handle) (replica.Startup, error) {
	p, err := b.lookup(h)
	if err != nil {
		return replica.Startup{}, err
	}
	if p.notify == nil {
		return probeReady(ctx, h, p)
	}
	type result struct {
		n   server.Notice
		err error
	}
	got := make(chan result, 1)
	go func() {
		n, err := server.ReadNotice(p.notify)
		got <- result{n, err}
	}()
	select {
	case r := <-got:
		switch {
		case r.err != nil:
			// The pipe closed without a notice: the replica died early.
			<-p.done
			return replica.Startup{}, b.exitedEarly(h, p)
		case r.n.Error != "":
			return replica.Startup{}, fmt.Errorf("replica %s failed to start: %s", h.Spec.ID, r.n.Error)
		}
		return replica.Startup{ModelLoadedAt: r.n.ModelLoadedAt, ReadyAt: r.n.ReadyAt, Artifact: r.n.Artifact}, nil
	case <-ctx.Done():
		p.notify.SetReadDeadline(time.Now()) // unblocks the reader
		return replica.Startup{}, ctx.Err()
	}
}

func (b *Backend) exitedEarly(h replica.Handle, p *proc) error {
	msg := fmt.Sprintf("replica %s exited before it was ready (%v)", h.Spec.ID, p.exit.Err)
	if tail := strings.TrimSpace(logTail(h)); tail != "" {
		msg += "; its log ends with:\n" + tail
	}
	return fmt.Errorf("%s", msg)
}

// info is what a replica says about itself at /ebb/v1/replica.
type info struct {
	ID            string                 `json:"id"`
	PID           int                    `json:"pid"`
	ModelLoadedAt time.Time              `json:"modelLoadedAt"`
	ReadyAt       time.Time              `json:"readyAt"`
	Artifact      *serving.ArtifactFetch `json:"artifact"`
}

// fetchInfo asks the replica at endpoint who it is; over its Unix socket
// when socket is not empty.
func fetchInfo(ctx context.Context, endpoint, socket string) (info, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/ebb/v1/replica", nil)
	if err != nil {
		return info{}, err
	}
	client := http.DefaultClient
	if socket != "" {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}}
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr}
	}
	resp, err := client.Do(req)
	if err != nil {
		return info{}, err
	}
	defer resp.Body.Close()
	var in info
	if err := json.NewDecoder(resp.Body).Decode(&in); err != nil {
		return info{}, fmt.Errorf("replica info: %w", err)
	}
	return in, nil
}

func probeReady(ctx context.Context, h replica.Handle, p *proc) (replica.Startup, error) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		if in, err := fetchInfo(ctx, h.Endpoint, ""); err == nil && !in.ReadyAt.IsZero() {
			return replica.Startup{ModelLoadedAt: in.ModelLoadedAt, ReadyAt: in.ReadyAt, Artifact: in.Artifact}, nil
		}
		select {
		case <-t.C:
		case <-p.done:
			return replica.Startup{}, fmt.Errorf("replica %s exited before it was ready", h.Spec.ID)
		case <-ctx.Done():
			return replica.Startup{}, ctx.Err()
		}
	}
}

// probeInterval paces readiness probes of recovered replicas.
const probeInterval = 50 * time.Millisecond

// Recover reattaches to a replica process started earlier, perhaps by another
// ebb process. It checks that the PID still names the same process (start
// time) and that the endpoint, and its Unix socket if it has one, answer
// with the replica's ID.
//
// A replica it cannot reattach is reaped: whatever is left of its process
// tree (the replica itself when it runs but does not answer, the processes
// an engine started when the replica died while ebb was down) is killed,
// each process verified to belong to the tree (tree.go), so a reused PID is
// never killed.
func (b *Backend) Recover(ctx context.Context, h replica.Handle) error {
	var st state
	if err := json.Unmarshal(h.State, &st); err != nil || st.PID <= 0 {
		return fmt.Errorf("replica %s: handle has no process state: %w", h.Spec.ID, replica.ErrNotFound)
	}
	if b.has(h.Spec.ID) {
		return nil
	}
	t := tree{id: h.Spec.ID, leader: st.PID, startTime: st.StartTime}
	gone := func() {
		t.kill()
		b.removeSocket(h.Socket)
	}
	start, err := procStartTime(st.PID)
	if err != nil || (st.StartTime != 0 && start != st.StartTime) {
		gone()
		return fmt.Errorf("replica %s (pid %d): %w", h.Spec.ID, st.PID, replica.ErrNotFound)
	}
	// The replica must answer with its ID at its endpoint, and over its
	// socket if it has one: the gateway dials it there.
	socks := []string{""}
	if h.Socket != "" {
		socks = append(socks, h.Socket)
	}
	for _, sock := range socks {
		if in, err := fetchInfo(ctx, h.Endpoint, sock); err != nil || in.ID != h.Spec.ID {
			gone()
			return fmt.Errorf("replica %s (pid %d) does not answer at %s, so it was killed: %w", h.Spec.ID, st.PID, cmp.Or(sock, h.Endpoint), replica.ErrNotFound)
		}
	}
	pidfd, err := unix.PidfdOpen(st.PID, 0)
	if err != nil {
		gone()
		return fmt.Errorf("replica %s (pid %d): %w", h.Spec.ID, st.PID, replica.ErrNotFound)
	}
	p := &proc{pid: st.PID, tree: t, done: make(chan struct{})}
	b.mu.Lock()
	b.procs[h.Spec.ID] = p
	b.mu.Unlock()
	go func() {
		// Not our child, so it cannot be waited for; its pidfd becomes
		// readable when it exits.
		f := os.NewFile(uintptr(pidfd), "pidfd")
		defer f.Close()
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err != unix.EINTR {
				break
			}
		}
		// Its PID may be reused from here on; t checks what it kills.
		p.mu.Lock()
		p.tree.kill()
		p.reaped = true
		p.mu.Unlock()
		b.removeSocket(h.Socket)
		p.exit = replica.Exit{Code: -1}
		close(p.done)
	}()
	return nil
}

func (b *Backend) has(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.procs[id]
	return ok
}
