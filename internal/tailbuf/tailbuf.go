// Package tailbuf keeps the last lines a process wrote, for error messages
// such as "python worker exited: exit status 3; its last lines on stderr:
// ...". A Buffer is an io.Writer that holds a bounded amount of the end of
// what was written.
package tailbuf

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer keeps the end of what is written to it: String returns at most
// MaxLines lines of the last MaxBytes bytes. It is safe for concurrent use.
type Buffer struct {
	maxLines, maxBytes int

	// mu guards buf.
	mu  sync.Mutex
	buf []byte
}

// New returns a Buffer that keeps maxLines lines of the last maxBytes bytes.
func New(maxLines, maxBytes int) *Buffer {
	return &Buffer{maxLines: maxLines, maxBytes: maxBytes}
}

// Write keeps the end of p; it never fails. It holds at most twice
// maxBytes, trimming as it goes.
func (t *Buffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - 2*t.maxBytes; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String returns at most maxLines lines of the last maxBytes written,
// without a trailing newline.
func (t *Buffer) String() string {
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
