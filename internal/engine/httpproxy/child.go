package httpproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
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

func jsonMarshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
