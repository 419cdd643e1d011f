// Package file is the artifact store on a local or mounted file system:
// artifacts live under a root directory as <root>/sha256/ab/ab12..., named
// by file:///<root>/sha256/ab/ab12... URIs.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/ebb-ml/ebb/internal/artifact"
)

var _ artifact.Store = (*Store)(nil)

// Store keeps artifacts under a root directory. Several processes may share
// one root: writes go to a temporary file under <root>/.tmp and are renamed
// into place, so a reader sees a whole artifact or none.
type Store struct {
	root string
}

// New returns a Store rooted at root, an absolute path. The directory is
// created on the first Put.
func New(root string) (*Store, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("artifact file store root %q is not an absolute path; give the full path, e.g. /var/lib/ebb/artifacts", root)
	}
	return &Store{root: filepath.Clean(root)}, nil
}

// Root returns the root directory.
func (s *Store) Root() string { return s.root }

// Location returns the store's root as a file:// URI.
func (s *Store) Location() string { return fileURI(s.root) }

// URI returns the URI the artifact with the given SHA-256 has in this store.
func (s *Store) URI(sum string) string {
	return fileURI(filepath.Join(s.root, filepath.FromSlash(artifact.Key(sum))))
}

func fileURI(p string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(p)}).String()
}

// Path returns the file that holds uri, which must name a file under the
// store's root.
func (s *Store) Path(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("artifact URI %q: %v", uri, err)
	}
	if u.Scheme != "file" || (u.Host != "" && u.Host != "localhost") {
		return "", fmt.Errorf("artifact URI %q is not a file:///absolute/path URI", uri)
	}
	p := filepath.Clean(filepath.FromSlash(u.Path))
	rel, err := filepath.Rel(s.root, p)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || !filepath.IsAbs(p) {
		return "", fmt.Errorf("artifact URI %q is not under this store's root %s", uri, s.root)
	}
	return p, nil
}

// Put implements artifact.Store.
func (s *Store) Put(ctx context.Context, r io.Reader) (ref artifact.Ref, err error) {
	tmpDir := filepath.Join(s.root, ".tmp")
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return artifact.Ref{}, fmt.Errorf("artifact file store: %w", err)
	}
	f, err := os.CreateTemp(tmpDir, "put-*")
	if err != nil {
		return artifact.Ref{}, fmt.Errorf("artifact file store: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name()) // a no-op once renamed
	}()
	hr := artifact.NewHashingReader(r)
	if _, err := io.Copy(f, ctxReader{ctx, hr}); err != nil {
		return artifact.Ref{}, fmt.Errorf("artifact file store: writing %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return artifact.Ref{}, fmt.Errorf("artifact file store: %w", err)
	}
	if err := f.Chmod(0o444); err != nil {
		return artifact.Ref{}, fmt.Errorf("artifact file store: %w", err)
	}
	if err := f.Close(); err != nil {
		return artifact.Ref{}, fmt.Errorf("artifact file store: %w", err)
	}
	sum := hr.SHA256()
	ref = artifact.Ref{URI: s.URI(sum), SHA256: sum, Size: hr.Size()}
	final := filepath.Join(s.root, filepath.FromSlash(artifact.Key(sum)))
	if fi, err := os.Stat(final); err == nil && fi.Size() == ref.Size {
		return ref, nil // already stored: content-addressed, so identical
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return artifact.Ref{}, fmt.Errorf("artifact file store: %w", err)
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return artifact.Ref{}, fmt.Errorf("artifact file store: %w", err)
	}
	return ref, nil
}

// Open implements artifact.Store.
func (s *Store) Open(ctx context.Context, uri string) (io.ReadCloser, error) {
	p, err := s.Path(uri)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("artifact %s: %w", uri, artifact.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("artifact %s: %w", uri, err)
	}
	return f, nil
}

// Stat implements artifact.Store.
func (s *Store) Stat(ctx context.Context, uri string) (artifact.Ref, error) {
	p, err := s.Path(uri)
	if err != nil {
		return artifact.Ref{}, err
	}
	sum, ok := artifact.SHA256FromURI(uri)
	if !ok {
		return artifact.Ref{}, fmt.Errorf("artifact URI %q does not end in sha256/xx/<sha256>", uri)
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return artifact.Ref{}, fmt.Errorf("artifact %s: %w", uri, artifact.ErrNotFound)
	}
	if err != nil {
		return artifact.Ref{}, fmt.Errorf("artifact %s: %w", uri, err)
	}
	return artifact.Ref{URI: uri, SHA256: sum, Size: fi.Size()}, nil
}

// Delete implements artifact.Store.
func (s *Store) Delete(ctx context.Context, uri string) error {
	p, err := s.Path(uri)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("artifact %s: %w", uri, err)
	}
	return nil
}

// ctxReader stops a copy once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
