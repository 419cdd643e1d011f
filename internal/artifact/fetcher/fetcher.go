// Package fetcher reads artifacts in a process of their own: Main is the
// body of that process (`ebb fetch-artifact URI`, which writes the
// artifact's bytes to its standard output), and Command is the
// artifact.Opener that runs it and reads what it writes.
//
// A replica fetches its model once, while it starts, and then serves for
// hours: the S3 client (minio-go, its XML and YAML decoders, its regular
// expressions compiled at init) would stay resident in every idle replica
// for nothing. So the lean replica binary does not link it, and reads s3://
// artifacts through Command, as KServe's storage initializer fetches a
// model in a container of its own. Verification stays with the reader: the
// cache checks every byte it gets against the artifact's SHA-256.
//
// The exit status carries what the caller must know of a failure: whether
// the artifact is missing (artifact.ErrNotFound), whether the store may
// answer later (artifact.ErrUnavailable, retried by a replica), or neither.
// The message is the last line the process wrote on its standard error.
package fetcher

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/tailbuf"
)

// Exit statuses of Main.
const (
	ExitOK          = 0
	ExitFailed      = 1 // any other error: a bad URI, access denied, ...
	ExitNotFound    = 3 // artifact.ErrNotFound
	ExitUnavailable = 4 // artifact.Transient: a later try may succeed
)

// Main writes the artifact at uri, read from src, to stdout, and returns
// the process's exit status; an error goes to stderr on one line.
func Main(ctx context.Context, src artifact.Opener, uri string, stdout, stderr io.Writer) int {
	err := copyArtifact(ctx, src, uri, stdout)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "error:", strings.ReplaceAll(err.Error(), "\n", " "))
	switch {
	case errors.Is(err, artifact.ErrNotFound):
		return ExitNotFound
	case artifact.Transient(err):
		return ExitUnavailable
	}
	return ExitFailed
}

func copyArtifact(ctx context.Context, src artifact.Opener, uri string, w io.Writer) error {
	rc, err := src.Open(ctx, uri)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("artifact %s: %w", uri, err)
	}
	return nil
}

// Command is an artifact.Opener that runs Argv plus the URI (a process
// whose body is Main) and reads the artifact from its standard output.
type Command struct {
	Argv []string
}

var _ artifact.Opener = Command{}

// maxError bounds the bytes of the process's error passed on.
const maxError = 2 << 10

// Open implements artifact.Opener. It returns once the process wrote the
// first bytes of the artifact, or ended: a missing artifact fails here, not
// on the first Read. Ending ctx kills the process.
func (c Command) Open(ctx context.Context, uri string) (io.ReadCloser, error) {
	if len(c.Argv) == 0 {
		return nil, errors.New("fetcher: no command to fetch artifacts with")
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], append(append([]string{}, c.Argv[1:]...), uri)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr := tailbuf.New(1, maxError) // its last line is its error ("error: ...")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("artifact %s: start %s: %w", uri, c.Argv[0], err)
	}
	r := &reader{ctx: ctx, uri: uri, cmd: cmd, out: bufio.NewReaderSize(out, 256<<10), stderr: stderr}
	if _, err := r.out.Peek(1); err != nil {
		if werr := r.wait(); werr != nil {
			return nil, werr
		}
		// An empty artifact: the process ended well having written
		// nothing.
	}
	return r, nil
}

// reader reads the artifact a fetch process writes; at the end of its
// output, the process's exit status decides between io.EOF and an error.
type reader struct {
	ctx    context.Context
	uri    string
	cmd    *exec.Cmd
	out    *bufio.Reader
	stderr *tailbuf.Buffer

	waited bool
	err    error // the process's outcome, once waited
}

func (r *reader) Read(p []byte) (int, error) {
	if r.waited {
		// Waited for once the output ended: nothing is left to read.
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	n, err := r.out.Read(p)
	if err == nil {
		return n, nil
	}
	// The output ended (EOF, or the pipe failed): the process says why.
	if werr := r.wait(); werr != nil {
		return n, werr
	}
	return n, err
}

// Close ends the process if it still runs (the caller stopped reading) and
// waits for it.
func (r *reader) Close() error {
	if !r.waited && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
	}
	_ = r.wait()
	return nil
}

// wait waits for the process once and returns its outcome as an error
// (nil: it wrote the whole artifact).
func (r *reader) wait() error {
	if r.waited {
		return r.err
	}
	r.waited = true
	err := r.cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case r.ctx.Err() != nil:
		r.err = fmt.Errorf("artifact %s: %w", r.uri, r.ctx.Err())
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		r.err = &Error{URI: r.uri, Status: exit.ExitCode(), Message: strings.TrimPrefix(strings.TrimSpace(r.stderr.String()), "error: ")}
	default:
		r.err = fmt.Errorf("artifact %s: %s: %w", r.uri, r.cmd.Path, err)
	}
	return r.err
}

// Error is a fetch process's failure: its exit status and message.
type Error struct {
	URI     string
	Status  int    // the exit status (ExitNotFound, ...)
	Message string // the last line of its standard error
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("artifact %s: fetch failed (exit status %d)", e.URI, e.Status)
	}
	return e.Message
}

// Unwrap makes a missing artifact match artifact.ErrNotFound, and a store
// that may answer later artifact.ErrUnavailable.
func (e *Error) Unwrap() error {
	switch e.Status {
	case ExitNotFound:
		return artifact.ErrNotFound
	case ExitUnavailable:
		return artifact.ErrUnavailable
	}
	return nil
}
