package fetcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/artifact"
)

// asFetcherEnv makes the test binary a fetch process (TestMain), whose
// store is fakeStore.
const asFetcherEnv = "EBB_FETCHER_TEST_AS_FETCHER"

func TestMain(m *testing.M) {
	if os.Getenv(asFetcherEnv) == "1" {
		os.Exit(Main(context.Background(), fakeStore{}, os.Args[len(os.Args)-1], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// big is an artifact larger than the pipe's and the reader's buffers.
var big = bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB

// fakeStore serves artifacts by the name in their URI, each failing its
// own way.
type fakeStore struct{}

func (fakeStore) Open(_ context.Context, uri string) (io.ReadCloser, error) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	switch strings.TrimPrefix(uri, "fake://") {
	case "small":
		return io.NopCloser(strings.NewReader("model bytes")), nil
	case "big":
		return io.NopCloser(bytes.NewReader(big)), nil
	case "empty":
		return io.NopCloser(strings.NewReader("")), nil
	case "missing":
		return nil, fmt.Errorf("artifact %s: %w", uri, artifact.ErrNotFound)
	case "unreachable":
		return nil, fmt.Errorf("artifact %s: S3: %w", uri, refused)
	case "busy":
		return nil, fmt.Errorf("artifact %s: S3: SlowDown (%w)", uri, artifact.ErrUnavailable)
	case "denied":
		return nil, fmt.Errorf("artifact %s: S3: Access Denied.", uri)
	case "cut":
		// Half the bytes, then the connection resets.
		return io.NopCloser(io.MultiReader(bytes.NewReader(big[:len(big)/2]), errReader{syscall.ECONNRESET})), nil
	case "slow":
		return io.NopCloser(io.MultiReader(strings.NewReader("first bytes"), slowReader{})), nil
	}
	return nil, fmt.Errorf("fake store: no case for %s", uri)
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// slowReader blocks until the process is killed.
type slowReader struct{}

func (slowReader) Read([]byte) (int, error) {
	time.Sleep(time.Hour)
	return 0, io.EOF
}

func command(t *testing.T) Command {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Command{Argv: []string{"/usr/bin/env", asFetcherEnv + "=1", self}}
}

// TestCommand reads artifacts through a fetch process: their bytes whole,
// and each failure as the caller must tell it (missing, transient, or
// neither), with the process's message, whether it happens before the
// first byte or halfway.
func TestCommand(t *testing.T) {
	for _, tc := range []struct {
		name        string
		want        []byte
		openErr     bool // the failure comes from Open, before any byte
		notFound    bool
		transient   bool
		errContains string
	}{
		{name: "small", want: []byte("model bytes")},
		{name: "big", want: big},
		{name: "empty", want: []byte{}},
		{name: "missing", openErr: true, notFound: true, errContains: "artifact fake://missing: artifact not found"},
		{name: "unreachable", openErr: true, transient: true, errContains: "connection refused"},
		{name: "busy", openErr: true, transient: true, errContains: "SlowDown"},
		{name: "denied", openErr: true, errContains: "Access Denied."},
		{name: "cut", want: big[:len(big)/2], transient: true, errContains: "connection reset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := command(t).Open(t.Context(), "fake://"+tc.name)
			var got []byte
			if err == nil {
				got, err = io.ReadAll(rc)
				rc.Close()
				if tc.openErr {
					t.Errorf("Open succeeded: a failure before the first byte must fail Open")
				}
			} else if !tc.openErr {
				t.Fatalf("Open: %v", err)
			}
			wantErr := tc.errContains != ""
			if (err != nil) != wantErr || (wantErr && !strings.Contains(err.Error(), tc.errContains)) {
				t.Fatalf("err = %v, want one saying %q", err, tc.errContains)
			}
			if tc.want != nil && !bytes.Equal(got, tc.want) {
				t.Errorf("read %d bytes, want %d", len(got), len(tc.want))
			}
			if errors.Is(err, artifact.ErrNotFound) != tc.notFound {
				t.Errorf("errors.Is(%v, artifact.ErrNotFound) = %v, want %v", err, !tc.notFound, tc.notFound)
			}
			if artifact.Transient(err) != tc.transient {
				t.Errorf("artifact.Transient(%v) = %v, want %v", err, !tc.transient, tc.transient)
			}
		})
	}
}

// TestCommandStops: closing a reader before the end, or ending its
// context, ends the fetch process instead of leaving it to run.
func TestCommandStops(t *testing.T) {
	t.Run("close", func(t *testing.T) {
		rc, err := command(t).Open(t.Context(), "fake://slow")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			rc.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("Close did not return: the fetch process still runs")
		}
	})
	t.Run("context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		rc, err := command(t).Open(ctx, "fake://slow")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		buf := make([]byte, len("first bytes"))
		if _, err := io.ReadFull(rc, buf); err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
			t.Errorf("read after cancel: err = %v, want context.Canceled", err)
		}
	})
}

// TestCommandMissingBinary: a fetch command that cannot start fails Open
// and names it.
func TestCommandMissingBinary(t *testing.T) {
	_, err := Command{Argv: []string{"/nonexistent/ebb", "fetch-artifact"}}.Open(t.Context(), "s3://b/k")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/ebb") {
		t.Errorf("err = %v, want one naming the command", err)
	}
	if _, err := (Command{}).Open(t.Context(), "s3://b/k"); err == nil {
		t.Error("Open with no command succeeded")
	}
}
