package artifact

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
)

// ErrUnavailable matches (errors.Is) the error of a store that could not
// answer for now: it answered a server error, asked to slow down (429) or
// timed out a request (408). A backend wraps such answers in it; Transient
// reports them.
var ErrUnavailable = errors.New("artifact store unavailable")

// Transient reports whether a failed read of an artifact may succeed if
// tried again later: the store was unreachable, cut the connection, timed
// out or answered ErrUnavailable. A missing artifact, corrupt bytes, a
// cancelled read and every other error cannot be mended by waiting.
func Transient(err error) bool {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, context.Canceled) {
		return false
	}
	var sum *ChecksumError
	if errors.As(err, &sum) {
		return false
	}
	if errors.Is(err, ErrUnavailable) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, context.DeadlineExceeded)
}
