package artifact_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/ebb-ml/ebb/internal/artifact"
)

func TestTransient(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", fmt.Errorf("artifact s3://b/k: S3: %w", refused), true},
		{"reset mid-download", fmt.Errorf("downloading: %w", syscall.ECONNRESET), true},
		{"cut body", fmt.Errorf("downloading: %w", io.ErrUnexpectedEOF), true},
		{"timed out", fmt.Errorf("artifact s3://b/k: %w", context.DeadlineExceeded), true},
		{"store unavailable", fmt.Errorf("artifact s3://b/k: S3: SlowDown (%w)", artifact.ErrUnavailable), true},
		{"missing artifact", fmt.Errorf("artifact s3://b/k: %w", artifact.ErrNotFound), false},
		{"corrupt artifact", &artifact.ChecksumError{URI: "s3://b/k", Want: "a", Got: "b"}, false},
		{"canceled", fmt.Errorf("artifact s3://b/k: %w", context.Canceled), false},
		{"denied", errors.New("artifact s3://b/k: S3: Access Denied."), false},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := artifact.Transient(tc.err); got != tc.want {
				t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
