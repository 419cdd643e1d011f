package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
)

// Logs is where the API reads a replica's output: the control loop over
// the process backend in `ebb up` (control.Controller), pod logs in a
// cluster. Errors wrap replica.ErrNotFound when the deployment has no such
// replica, and errors.ErrUnsupported when replicas' logs cannot be read
// here.
type Logs interface {
	Logs(ctx context.Context, deployment, replica string, opts replica.LogOptions) (io.ReadCloser, error)
}

// Error codes of the logs route.
const (
	codeReplicaNotFound = "replica/not_found"
	codeLogsUnsupported = "logs/unsupported"
)

// defaultTailLines is how many lines of each replica's log a request
// without ?tail= gets.
const defaultTailLines = 100

// maxLineBytes bounds one line of a multiplexed stream; a longer line is
// passed on in pieces.
const maxLineBytes = 64 << 10

// MountLogs adds the logs route, served from l, to h. Call it before h
// serves requests.
//
//	GET /v1/deployments/{name}/logs?replica=ID&follow=true&tail=N
//
// answers text/plain, streamed (chunked, flushed as output arrives): the
// replica's output, or without ?replica= the output of every current
// replica with each line prefixed by "[ID] ". tail is the number of lines
// from the end of each log (default 100; -1: the whole log). With
// follow=true the stream stays open for new output until the replicas end
// or the client goes away.
func (h *Handler) MountLogs(l Logs) {
	h.mux.HandleFunc("GET /v1/deployments/{name}/logs", func(w http.ResponseWriter, r *http.Request) {
		h.logs(w, r, l)
	})
	h.mux.HandleFunc("/v1/deployments/{name}/logs", methodNotAllowed("GET, HEAD"))
}

// logQuery reads ?follow= and ?tail=.
func logQuery(r *http.Request) (replica.LogOptions, error) {
	q := r.URL.Query()
	opts := replica.LogOptions{TailLines: defaultTailLines}
	if s := q.Get("follow"); s != "" {
		f, err := strconv.ParseBool(s)
		if err != nil {
			return opts, &apiError{http.StatusBadRequest, codeMalformed, fmt.Sprintf("follow %q must be true or false", s)}
		}
		opts.Follow = f
	}
	if s := q.Get("tail"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || (n < 1 && n != -1) {
			return opts, &apiError{http.StatusBadRequest, codeMalformed,
				fmt.Sprintf("tail %q must be a number of lines from 1 up, or -1 for the whole log", s)}
		}
		opts.TailLines = max(n, 0)
	}
	return opts, nil
}

func (h *Handler) logs(w http.ResponseWriter, r *http.Request, l Logs) {
	ctx := r.Context()
	name := r.PathValue("name")
	opts, err := logQuery(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if _, err := h.st.GetDeployment(ctx, name); err != nil {
		h.writeError(w, r, storeError(err, name))
		return
	}
	if id := r.URL.Query().Get("replica"); id != "" {
		rc, err := l.Logs(ctx, name, id, opts)
		if err != nil {
			h.writeError(w, r, logsError(err, name, id))
			return
		}
		defer rc.Close()
		sw := startStream(w)
		if _, err := io.Copy(sw, rc); err != nil && ctx.Err() == nil {
			h.log.Warn("logs stream ended early", "deployment", name, "replica", id, "err", err)
		}
		return
	}

	var ids []string
	for _, rs := range h.ctl.Status(name).ReplicaStatuses {
		ids = append(ids, rs.ID)
	}
	if len(ids) == 0 {
		h.writeError(w, r, &apiError{http.StatusNotFound, codeReplicaNotFound,
			fmt.Sprintf("deployment %q has no replicas now (it is scaled to zero): a request wakes it; see `ebb describe deployment %s`", name, name)})
		return
	}
	type stream struct {
		id string
		rc io.ReadCloser
	}
	var streams []stream
	var missing []string
	for _, id := range ids {
		rc, err := l.Logs(ctx, name, id, opts)
		if errors.Is(err, replica.ErrNotFound) {
			missing = append(missing, id) // starting, or ended meanwhile
			continue
		}
		if err != nil {
			for _, s := range streams {
				s.rc.Close()
			}
			h.writeError(w, r, logsError(err, name, id))
			return
		}
		streams = append(streams, stream{id, rc})
	}
	if len(streams) == 0 {
		h.writeError(w, r, &apiError{http.StatusNotFound, codeReplicaNotFound,
			fmt.Sprintf("no logs yet for the replicas of deployment %q (%s): they are starting; try again in a moment", name, strings.Join(missing, ", "))})
		return
	}
	sw := &lineWriter{w: startStream(w)}
	for _, id := range missing {
		sw.line(id, []byte("(no logs yet: the replica is starting)\n"))
	}
	copyLines := func(s stream) {
		defer s.rc.Close()
		if err := sw.copy(s.id, s.rc); err != nil && ctx.Err() == nil {
			h.log.Warn("logs stream ended early", "deployment", name, "replica", s.id, "err", err)
		}
	}
	if !opts.Follow {
		// One replica after another, so each one's lines stay together.
		for _, s := range streams {
			copyLines(s)
		}
		return
	}
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Go(func() { copyLines(s) })
	}
	wg.Wait()
}

// logsError maps a Logs error to an API error.
func logsError(err error, name, id string) error {
	switch {
	case errors.Is(err, replica.ErrNotFound):
		return &apiError{http.StatusNotFound, codeReplicaNotFound,
			fmt.Sprintf("deployment %q has no replica %q (it may have ended): list its replicas with `ebb get deployment %s`", name, id, name)}
	case errors.Is(err, errors.ErrUnsupported):
		return &apiError{http.StatusNotImplemented, codeLogsUnsupported,
			"this server cannot read replica logs: " + err.Error()}
	}
	return err
}

// flushWriter flushes every write to the client at once.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

// startStream sends the headers of a log stream and returns a writer that
// flushes each write.
func startStream(w http.ResponseWriter) io.Writer {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// A stream has no end the server's read and write timeouts could
	// foresee (package connlimit): lift them.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	_ = rc.Flush()
	return flushWriter{w: w, rc: rc}
}

// lineWriter writes lines of several replicas to one stream, each prefixed
// with its replica's ID; whole lines never interleave.
type lineWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (lw *lineWriter) line(id string, b []byte) error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	buf := make([]byte, 0, len(id)+3+len(b))
	buf = append(append(append(buf, '['), id...), "] "...)
	_, err := lw.w.Write(append(buf, b...))
	return err
}

// copy writes rc's lines with id's prefix; an unfinished last line gets a
// newline.
func (lw *lineWriter) copy(id string, rc io.Reader) error {
	br := bufio.NewReaderSize(rc, maxLineBytes)
	for {
		b, err := br.ReadSlice('\n')
		if len(b) > 0 {
			if err != nil && err != bufio.ErrBufferFull {
				b = append(b[:len(b):len(b)], '\n') // a copy: b is br's buffer
			}
			if werr := lw.line(id, b); werr != nil {
				return werr
			}
		}
		switch {
		case err == nil, err == bufio.ErrBufferFull:
		case err == io.EOF:
			return nil
		default:
			return err
		}
	}
}
