// Package backend picks an artifact store from a location URI:
// file:///abs/path (or a bare absolute path) for artifact/file, and
// s3://bucket/prefix for artifact/s3.
package backend

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"path/filepath"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/artifact/file"
	"github.com/ebb-ml/ebb/internal/artifact/s3"
)

// Options carry the settings of every backend; each uses its own part.
type Options struct {
	S3 s3.Options
}

// Open returns the store at location. It makes no request and creates
// nothing.
func Open(location string, opts Options) (artifact.Store, error) {
	if filepath.IsAbs(location) {
		return file.New(location)
	}
	u, err := url.Parse(location)
	if err != nil {
		return nil, fmt.Errorf("artifact store location %q: %v", location, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("artifact store location %q: file URIs take three slashes and an absolute path, e.g. file:///var/lib/ebb/artifacts", location)
		}
		return file.New(filepath.FromSlash(u.Path))
	case "s3":
		return s3.New(location, opts.S3)
	default:
		return nil, fmt.Errorf("artifact store location %q: unsupported scheme %q; use file:///absolute/path or s3://bucket/prefix", location, u.Scheme)
	}
}

// Reader opens artifact URIs of every supported scheme, wherever they
// live: any file:///abs/path and any s3://bucket/key (with the S3 options
// given). It is the artifact.Opener for a Cache that must fetch artifacts
// from more than one store.
type Reader struct {
	Options Options
}

var _ artifact.Opener = Reader{}

// Open implements artifact.Opener.
func (r Reader) Open(ctx context.Context, uri string) (io.ReadCloser, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("artifact URI %q: %v", uri, err)
	}
	var st artifact.Store
	switch u.Scheme {
	case "file":
		st, err = file.New(string(filepath.Separator))
	case "s3":
		st, err = s3.New("s3://"+u.Host, r.Options.S3)
	default:
		return nil, fmt.Errorf("artifact URI %q: unsupported scheme %q; use file:///absolute/path or s3://bucket/key", uri, u.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return st.Open(ctx, uri)
}
