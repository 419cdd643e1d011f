package python

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/tailbuf"
)

// worker is one Python worker process and the replica's end of its channel.
// Calls may overlap: frames are written one at a time and answers matched to
// calls by request id.
type worker struct {
	slot    int
	cmd     *exec.Cmd
	conn    *net.UnixConn
	r       *bufio.Reader
	stderr  *tailbuf.Buffer
	started time.Time

	// wmu serializes frame writes.
	wmu sync.Mutex

	// mu guards pending and err.
	mu      sync.Mutex
	pending map[uint64]chan result
	// err says why the worker exited; set (under mu) before done closes.
	err  error
	done chan struct{}

	// inflight counts the calls sent and not answered; Model.mu guards it.
	inflight int
}

// result is a worker's answer to one call: outputs (RESULT), text
// (LOADED) or err.
type result struct {
	outputs []oip.Tensor
	text    string
	err     error
}

// spawn starts worker slot and waits until it loaded the class: it returns
// the worker and the metadata JSON it reported, or why it did not start.
// The worker's reader runs from then on; exited is called once it exits.
func (m *Model) spawn(ctx context.Context, slot int, exited func(*worker)) (*worker, string, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, "", fmt.Errorf("engine python: create the channel to worker %d: %w", slot, err)
	}
	child := os.NewFile(uintptr(fds[1]), "python-worker-child")
	defer child.Close()
	parent := os.NewFile(uintptr(fds[0]), "python-worker")
	fc, err := net.FileConn(parent) // a duplicate, on the poller
	parent.Close()
	if err != nil {
		return nil, "", fmt.Errorf("engine python: open the channel to worker %d: %w", slot, err)
	}
	conn := fc.(*net.UnixConn)

	args := []string{"-u", m.script, "--fd", "3"}
	if m.pool {
		args = append(args, "--pool")
	} else {
		args = append(args, "--model", m.opts.Model, "--python-class", m.opts.Class)
	}
	args = append(args, "--worker", strconv.Itoa(slot), "--datatypes", strings.Join(datatypeNames(), ","))
	cmd := exec.Command(m.interp, args...)
	cmd.ExtraFiles = []*os.File{child}
	cmd.Env = append(os.Environ(), m.opts.Env...)
	w := &worker{
		slot:    slot,
		cmd:     cmd,
		conn:    conn,
		r:       bufio.NewReaderSize(conn, 64<<10),
		stderr:  tailbuf.New(20, 4096),
		pending: map[uint64]chan result{},
		done:    make(chan struct{}),
	}
	cmd.Stdout = m.opts.Stdout
	cmd.Stderr = io.MultiWriter(m.opts.Stderr, w.stderr)
	// A process the worker started may hold its stderr open: Wait stops
	// copying it this long after the worker exited.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, "", fmt.Errorf("engine python: start %s: %w", m.interp, err)
	}
	w.started = time.Now()
	child.Close()

	// The handshake: READY with the metadata, or LOADERR with the reason.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	f, err := readFrame(w.r)
	stop()
	if err == nil && f.kind == kindReady {
		meta, terr := decodeText(f.payload)
		if terr == nil {
			conn.SetReadDeadline(time.Time{})
			var v struct{ Python, Numpy string }
			json.Unmarshal([]byte(meta), &v)
			m.opts.Logger.Info("python worker ready", "worker", slot, "pid", cmd.Process.Pid, "model", m.opts.Model,
				"python", v.Python, "numpy", v.Numpy)
			go w.readLoop(exited)
			return w, meta, nil
		}
		err = terr
	}
	var loadErr string
	if err == nil && f.kind == kindLoadErr {
		loadErr, err = decodeText(f.payload)
	} else if err == nil {
		err = fmt.Errorf("%w: kind %d before ready", errFrame, f.kind)
	}
	// It failed: make sure it is gone, then say why.
	if loadErr == "" {
		w.cmd.Process.Kill()
	}
	w.reap(m.opts.StopTimeout)
	conn.Close()
	switch {
	case loadErr != "":
		return nil, "", errors.New(loadErr)
	case ctx.Err() != nil:
		return nil, "", fmt.Errorf("engine python: worker %d did not load the class in time: %w", slot, ctx.Err())
	case errors.Is(err, errFrame):
		return nil, "", fmt.Errorf("engine python: worker %d broke the channel's framing while loading (%v): does the class write to file descriptor 3?", slot, err)
	}
	return nil, "", fmt.Errorf("engine python: the worker exited while loading the class: %s", w.describeExit())
}

// readLoop delivers the worker's answers until its channel ends, then reaps
// it, fails the calls still waiting and calls exited.
func (w *worker) readLoop(exited func(*worker)) {
	var err error
	for err == nil {
		var f frame
		if f, err = readFrame(w.r); err != nil {
			break
		}
		switch f.kind {
		case kindResult:
			outs, derr := decodeTensors(f.payload)
			if errors.Is(derr, errFrame) {
				err = derr
				break
			}
			w.deliver(f.id, result{outputs: outs, err: derr})
		case kindError:
			status, msg, derr := decodeError(f.payload)
			if derr != nil {
				err = derr
				break
			}
			w.deliver(f.id, result{err: callError(status, msg)})
		case kindLoaded:
			text, derr := decodeText(f.payload)
			if derr != nil {
				err = derr
				break
			}
			w.deliver(f.id, result{text: text})
		default:
			err = fmt.Errorf("%w: unexpected kind %d", errFrame, f.kind)
		}
	}
	if !errors.Is(err, io.EOF) {
		// Not an orderly end: the framing broke, or the socket did.
		w.cmd.Process.Kill()
	}
	w.reap(5 * time.Second)
	w.conn.Close()
	exitErr := errors.New("python worker exited: " + w.describeExit())
	if errors.Is(err, errFrame) {
		exitErr = fmt.Errorf("python worker %d broke the channel's framing (%v) and was stopped", w.slot, err)
	}
	w.mu.Lock()
	w.err = exitErr
	pending := w.pending
	w.pending = nil
	w.mu.Unlock()
	for _, ch := range pending {
		ch <- result{err: exitErr}
	}
	close(w.done)
	exited(w)
}

// callError is the error for a worker's ERROR answer: an *engine.InputError
// for a 4xx (the class blamed the input), else a failure of the model.
func callError(status int, msg string) error {
	if status >= 400 && status < 500 {
		return &engine.InputError{Message: msg}
	}
	return errors.New(msg)
}

// deliver hands an answer to the call waiting for id; nobody waits for a
// call whose context ended.
func (w *worker) deliver(id uint64, r result) {
	w.mu.Lock()
	ch, ok := w.pending[id]
	delete(w.pending, id)
	w.mu.Unlock()
	if ok {
		ch <- r
	}
}

// call sends inputs as request id and waits for the answer, the worker's
// exit, or ctx.
func (w *worker) call(ctx context.Context, id uint64, inputs []oip.Tensor) ([]oip.Tensor, error) {
	bufs, _, err := inferFrame(id, inputs)
	if err != nil {
		return nil, err
	}
	r := w.roundTrip(ctx, id, bufs)
	return r.outputs, r.err
}

// control sends a pool's LOAD or UNLOAD frame as request id and returns
// the worker's LOADED text; an ERROR answer is the error its message says.
func (w *worker) control(ctx context.Context, id uint64, frame []byte) (string, error) {
	r := w.roundTrip(ctx, id, [][]byte{frame})
	var ie *engine.InputError
	if errors.As(r.err, &ie) {
		return "", errors.New(ie.Message)
	}
	return r.text, r.err
}

// roundTrip writes the frame in bufs, request id, and waits for its
// answer, the worker's exit, or ctx.
func (w *worker) roundTrip(ctx context.Context, id uint64, bufs [][]byte) result {
	ch := make(chan result, 1)
	w.mu.Lock()
	if w.pending == nil {
		err := w.err
		w.mu.Unlock()
		return result{err: err}
	}
	w.pending[id] = ch
	w.mu.Unlock()

	w.wmu.Lock()
	nb := net.Buffers(bufs)
	_, err := nb.WriteTo(w.conn)
	w.wmu.Unlock()
	if err != nil {
		// The worker is gone (or going): its reader fails the call with
		// the exit status.
		w.cmd.Process.Kill()
	}
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		w.mu.Lock()
		delete(w.pending, id)
		w.mu.Unlock()
		return result{err: ctx.Err()}
	}
}

// stop closes the channel, which ends the worker once it finished what it
// was sent, and waits for it to exit; after timeout it is killed.
func (w *worker) stop(timeout time.Duration) {
	w.conn.CloseWrite()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
		return
	case <-t.C:
	}
	w.cmd.Process.Kill()
	<-w.done
}

// reap waits for the process to exit, killing it after timeout.
func (w *worker) reap(timeout time.Duration) {
	t := time.AfterFunc(timeout, func() { w.cmd.Process.Kill() })
	defer t.Stop()
	w.cmd.Wait()
}

// describeExit says how the reaped worker ended and what it last wrote on
// stderr.
func (w *worker) describeExit() string {
	state := "it could not be waited for"
	if ps := w.cmd.ProcessState; ps != nil {
		state = ps.String()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			state = "killed by " + unix.SignalName(ws.Signal())
		}
	}
	msg := fmt.Sprintf("%s (worker %d, pid %d)", state, w.slot, w.cmd.Process.Pid)
	if tail := w.stderr.String(); tail != "" {
		msg += "; its last lines on stderr:\n" + tail
	}
	return msg
}
