package s3

import (
	"errors"
	"net/http"
	"testing"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/minio/minio-go/v7"
)

// TestWrap: the S3 answers a later try may not get again (5xx, 429, 408)
// match artifact.ErrUnavailable, a missing object artifact.ErrNotFound,
// and the others neither.
func TestWrap(t *testing.T) {
	s := &Store{bucket: "b"}
	for _, tc := range []struct {
		name        string
		err         error
		notFound    bool
		unavailable bool
	}{
		{"503", minio.ErrorResponse{Code: "SlowDown", StatusCode: http.StatusServiceUnavailable}, false, true},
		{"500", minio.ErrorResponse{Code: "InternalError", StatusCode: http.StatusInternalServerError}, false, true},
		{"429", minio.ErrorResponse{StatusCode: http.StatusTooManyRequests}, false, true},
		{"408", minio.ErrorResponse{Code: "RequestTimeout", StatusCode: http.StatusRequestTimeout}, false, true},
		{"403", minio.ErrorResponse{Code: "AccessDenied", StatusCode: http.StatusForbidden}, false, false},
		{"missing bucket", minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: http.StatusNotFound}, false, false},
		{"missing key", minio.ErrorResponse{Code: "NoSuchKey", StatusCode: http.StatusNotFound}, true, false},
		{"other", errors.New("no route to the store"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.wrap("s3://b/k", tc.err)
			if got := errors.Is(err, artifact.ErrNotFound); got != tc.notFound {
				t.Errorf("errors.Is(%v, ErrNotFound) = %v, want %v", err, got, tc.notFound)
			}
			if got := errors.Is(err, artifact.ErrUnavailable); got != tc.unavailable {
				t.Errorf("errors.Is(%v, ErrUnavailable) = %v, want %v", err, got, tc.unavailable)
			}
			if got := artifact.Transient(err); got != tc.unavailable {
				t.Errorf("artifact.Transient(%v) = %v, want %v", err, got, tc.unavailable)
			}
		})
	}
}
