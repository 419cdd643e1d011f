package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
)

var _ replica.Logger = (*Backend)(nil)

// followEvery is how often a followed log file is read for new output.
const followEvery = 100 * time.Millisecond

// Logs reads the replica's log file, which holds its standard output and
// error (the file named in its handle, <LogDir>/<id>.log). The file
// outlives the replica, so the output of one that ended can still be read.
// With opts.Follow the stream waits for new output until the replica
// exits; a replica this Backend did not start or recover counts as exited.
func (b *Backend) Logs(ctx context.Context, h replica.Handle, opts replica.LogOptions) (io.ReadCloser, error) {
	var st state
	if err := json.Unmarshal(h.State, &st); err != nil || st.LogPath == "" {
		return nil, fmt.Errorf("replica %s: its handle names no log file: %w", h.Spec.ID, replica.ErrNotFound)
	}
	f, err := os.Open(st.LogPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("replica %s: log file %s is gone: %w", h.Spec.ID, st.LogPath, replica.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("replica %s: %w", h.Spec.ID, err)
	}
	if opts.TailLines > 0 {
		off, err := tailOffset(f, opts.TailLines)
		if err == nil {
			_, err = f.Seek(off, io.SeekStart)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("replica %s: read log %s: %w", h.Spec.ID, st.LogPath, err)
		}
	}
	if !opts.Follow {
		return f, nil
	}
	exited := make(chan struct{})
	if p, err := b.lookup(h); err == nil {
		exited = p.done
	} else {
		close(exited)
	}
	return &follower{ctx: ctx, f: f, exited: exited, closed: make(chan struct{})}, nil
}

// follower reads a growing file until the process writing it exited and
// everything was read, ctx ends or it is closed.
type follower struct {
	ctx    context.Context // the Logs call's; it bounds the stream
	f      *os.File
	exited <-chan struct{}

	closeOnce sync.Once
	closed    chan struct{}
}

func (fl *follower) Read(p []byte) (int, error) {
	var tick *time.Ticker
	for {
		n, err := fl.f.Read(p)
		if n > 0 || (err != nil && err != io.EOF) {
			return n, err
		}
		fl.rewindIfTruncated()
		select {
		case <-fl.exited:
			// It wrote its last byte before it exited: read to the end.
			n, err := fl.f.Read(p)
			if n > 0 {
				return n, nil
			}
			return 0, err
		default:
		}
		if tick == nil {
			tick = time.NewTicker(followEvery)
			defer tick.Stop()
		}
		select {
		case <-tick.C:
		case <-fl.exited:
		case <-fl.closed:
			return 0, os.ErrClosed
		case <-fl.ctx.Done():
			return 0, fl.ctx.Err()
		}
	}
}

// rewindIfTruncated starts over at the beginning of a file that rotation
// (rotate.go) truncated below what was read.
func (fl *follower) rewindIfTruncated() {
	off, err := fl.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return
	}
	if info, err := fl.f.Stat(); err == nil && info.Size() < off {
		_, _ = fl.f.Seek(0, io.SeekStart)
	}
}

// Close ends the stream; a Read waiting for output returns.
func (fl *follower) Close() error {
	fl.closeOnce.Do(func() { close(fl.closed) })
	return fl.f.Close()
}

// tailOffset returns the offset of the start of the n-th line from the end
// of f; a final newline ends the last line rather than starting another.
func tailOffset(f *os.File, n int64) (int64, error) {
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := info.Size()
	const chunk = 32 << 10
	buf := make([]byte, chunk)
	var lines int64
	for end := size; end > 0; {
		start := max(end-chunk, 0)
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && err != io.EOF {
			return 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' || start+int64(i) == size-1 {
				continue
			}
			if lines++; lines == n {
				return start + int64(i) + 1, nil
			}
		}
		end = start
	}
	return 0, nil
}
