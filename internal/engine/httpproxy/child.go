package httpproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is the command a Replica started.
type child struct {
	cmd  *exec.Cmd
	url  string        // where it serves: http://127.0.0.1:$PORT
	done chan struct{} // closed once it exited and was reaped
	err  error         // cmd.Wait's error, set before done closes
}

// stop asks the command's process group to exit (SIGTERM) and kills it when
// it has not exited after timeout. It returns once the command was reaped.
func (c *child) stop(timeout time.Duration) {
	pgid := c.cmd.Process.Pid
	// Also when the command already exited: processes it left in its group
	// are stopped too.
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return
	case <-t.C:
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-c.done
}

// exitError describes how the command ended; call it after done closed.
func (c *child) exitError() *ExitError {
	ps := c.cmd.ProcessState
	if ps == nil {
		msg := "it could not be waited for"
		if c.err != nil {
			msg = c.err.Error()
		}
		return &ExitError{Code: 1, Msg: msg}
	}
	code := ps.ExitCode()
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	msg := ps.String()
	var ee *exec.ExitError
	if c.err != nil && !errors.As(c.err, &ee) {
		msg += ": " + c.err.Error() // e.g. its output could not be copied
	}
	return &ExitError{Code: code, Msg: msg}
}

// tailBuffer keeps the last lines written to it, for error messages.
type tailBuffer struct {
	maxLines, maxBytes int

	// mu guards buf.
	mu  sync.Mutex
	buf []byte
}

func newTailBuffer(maxLines, maxBytes int) *tailBuffer {
	return &tailBuffer{maxLines: maxLines, maxBytes: maxBytes}
}

// Write keeps the end of p; it never fails.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - 2*t.maxBytes; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String returns at most maxLines of the last maxBytes written.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	b := t.buf
	if len(b) > t.maxBytes {
		b = b[len(b)-t.maxBytes:]
	}
	s := string(bytes.TrimRight(b, "\n"))
	t.mu.Unlock()
	lines := strings.Split(s, "\n")
	if len(lines) > t.maxLines {
		lines = lines[len(lines)-t.maxLines:]
	}
	return strings.Join(lines, "\n")
}

func jsonMarshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
