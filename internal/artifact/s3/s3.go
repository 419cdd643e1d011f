// Package s3 is the artifact store on S3 or any S3-compatible server
// (MinIO, versitygw, Ceph): artifacts live in one bucket under a prefix as
// <prefix>/sha256/ab/ab12..., named by s3://bucket/prefix/sha256/ab/ab12...
// URIs.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ebb-ml/ebb/internal/artifact"
)

var _ artifact.Store = (*Store)(nil)

// Options configure a Store. Empty fields fall back to the environment.
type Options struct {
	// Endpoint is the server, "host:port" or "http(s)://host:port".
	// Default: $EBB_S3_ENDPOINT, else s3.amazonaws.com over HTTPS. A bare
	// host:port uses HTTPS unless Insecure is set.
	Endpoint string
	// AccessKey and SecretKey default to $AWS_ACCESS_KEY_ID and
	// $AWS_SECRET_ACCESS_KEY; SessionToken to $AWS_SESSION_TOKEN. With no
	// keys at all requests are anonymous.
	AccessKey    string
	SecretKey    string
	SessionToken string
	// Region defaults to $AWS_REGION; empty lets the client discover it.
	Region string
	// Insecure uses plain HTTP for a bare host:port endpoint.
	Insecure bool
	// TempDir holds Put's spool files (an artifact is hashed to a local
	// file before upload so that its key is known and an identical
	// artifact is never uploaded twice). Default os.TempDir().
	TempDir string
	// PartSize is the multipart upload part size; default 16 MiB.
	PartSize uint64
}

// Store keeps artifacts in one bucket under one prefix. The bucket must
// exist.
type Store struct {
	client   *minio.Client
	bucket   string
	prefix   string // no leading or trailing slash; may be empty
	tempDir  string
	partSize uint64
}

// New returns a Store for location, "s3://bucket" or "s3://bucket/prefix".
// It makes no request.
func New(location string, opts Options) (*Store, error) {
	u, err := url.Parse(location)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("artifact store location %q is not s3://bucket[/prefix]", location)
	}
	client, err := NewClient(opts)
	if err != nil {
		return nil, err
	}
	if opts.TempDir == "" {
		opts.TempDir = os.TempDir()
	}
	if opts.PartSize == 0 {
		opts.PartSize = 16 << 20
	}
	return &Store{
		client:   client,
		bucket:   u.Host,
		prefix:   strings.Trim(u.Path, "/"),
		tempDir:  opts.TempDir,
		partSize: opts.PartSize,
	}, nil
}

// NewClient returns a client for the S3 server opts name, with the
// environment's defaults filled in as New does (endpoint, keys, region).
// It makes no request. Other readers and writers of S3 (batch jobs'
// datasets) share the artifact store's configuration through it.
func NewClient(opts Options) (*minio.Client, error) {
	if opts.Endpoint == "" {
		opts.Endpoint = os.Getenv("EBB_S3_ENDPOINT")
	}
	if opts.Endpoint == "" {
		opts.Endpoint = "https://s3.amazonaws.com"
	}
	if opts.AccessKey == "" && opts.SecretKey == "" {
		opts.AccessKey = os.Getenv("AWS_ACCESS_KEY_ID")
		opts.SecretKey = os.Getenv("AWS_SECRET_ACCESS_KEY")
		if opts.SessionToken == "" {
			opts.SessionToken = os.Getenv("AWS_SESSION_TOKEN")
		}
	}
	if opts.Region == "" {
		opts.Region = os.Getenv("AWS_REGION")
	}
	host, secure := opts.Endpoint, !opts.Insecure
	if ep, err := url.Parse(opts.Endpoint); err == nil && (ep.Scheme == "http" || ep.Scheme == "https") {
		if ep.Path != "" && ep.Path != "/" {
			return nil, fmt.Errorf("S3 endpoint %q has a path; give scheme://host:port only", opts.Endpoint)
		}
		host, secure = ep.Host, ep.Scheme == "https"
	}
	client, err := minio.New(host, &minio.Options{
		Creds:  credentials.NewStaticV4(opts.AccessKey, opts.SecretKey, opts.SessionToken),
		Secure: secure,
		Region: opts.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 endpoint %q: %v", opts.Endpoint, err)
	}
	return client, nil
}

// Location returns the store's s3://bucket/prefix.
func (s *Store) Location() string {
	if s.prefix == "" {
		return "s3://" + s.bucket
	}
	return "s3://" + s.bucket + "/" + s.prefix
}

// Bucket returns the bucket name.
func (s *Store) Bucket() string { return s.bucket }

// URI returns the URI the artifact with the given SHA-256 has in this store.
func (s *Store) URI(sum string) string { return "s3://" + s.bucket + "/" + s.key(sum) }

func (s *Store) key(sum string) string {
	if s.prefix == "" {
		return artifact.Key(sum)
	}
	return s.prefix + "/" + artifact.Key(sum)
}

// ObjectKey returns the object key that uri names; uri must be in this
// store's bucket and under its prefix.
func (s *Store) ObjectKey(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "s3" {
		return "", fmt.Errorf("artifact URI %q is not an s3://bucket/key URI", uri)
	}
	key := strings.TrimPrefix(u.Path, "/")
	if u.Host != s.bucket || key == "" || (s.prefix != "" && !strings.HasPrefix(key, s.prefix+"/")) {
		return "", fmt.Errorf("artifact URI %q is not in this store (%s)", uri, s.Location())
	}
	return key, nil
}

// Put implements artifact.Store. It spools r to a temporary file while
// hashing it, then uploads the file unless the bucket already holds it.
func (s *Store) Put(ctx context.Context, r io.Reader) (artifact.Ref, error) {
	f, err := os.CreateTemp(s.tempDir, "ebb-s3-put-*")
	if err != nil {
		return artifact.Ref{}, fmt.Errorf("artifact s3 store: spooling: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	hr := artifact.NewHashingReader(r)
	if _, err := io.Copy(f, ctxReader{ctx, hr}); err != nil {
		return artifact.Ref{}, fmt.Errorf("artifact s3 store: spooling to %s: %w", f.Name(), err)
	}
	sum := hr.SHA256()
	ref := artifact.Ref{URI: s.URI(sum), SHA256: sum, Size: hr.Size()}
	key := s.key(sum)
	if info, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{}); err == nil && info.Size == ref.Size {
		return ref, nil // already stored: content-addressed, so identical
	} else if err != nil && !isNotFound(err) {
		return artifact.Ref{}, s.wrap(ref.URI, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return artifact.Ref{}, fmt.Errorf("artifact s3 store: %w", err)
	}
	_, err = s.client.PutObject(ctx, s.bucket, key, f, ref.Size, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    s.partSize,
	})
	if err != nil {
		return artifact.Ref{}, s.wrap(ref.URI, err)
	}
	return ref, nil
}

// Open implements artifact.Store.
func (s *Store) Open(ctx context.Context, uri string) (io.ReadCloser, error) {
	key, err := s.ObjectKey(uri)
	if err != nil {
		return nil, err
	}
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap(uri, err)
	}
	// GetObject is lazy; Stat sends the request so a missing object fails
	// here rather than on the first Read.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, s.wrap(uri, err)
	}
	return obj, nil
}

// Stat implements artifact.Store.
func (s *Store) Stat(ctx context.Context, uri string) (artifact.Ref, error) {
	key, err := s.ObjectKey(uri)
	if err != nil {
		return artifact.Ref{}, err
	}
	sum, ok := artifact.SHA256FromURI(uri)
	if !ok {
		return artifact.Ref{}, fmt.Errorf("artifact URI %q does not end in sha256/xx/<sha256>", uri)
	}
	info, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return artifact.Ref{}, s.wrap(uri, err)
	}
	return artifact.Ref{URI: uri, SHA256: sum, Size: info.Size}, nil
}

// Delete implements artifact.Store.
func (s *Store) Delete(ctx context.Context, uri string) error {
	key, err := s.ObjectKey(uri)
	if err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
		return s.wrap(uri, err)
	}
	return nil
}

func isNotFound(err error) bool {
	resp := minio.ToErrorResponse(err)
	return resp.Code == "NoSuchKey" || resp.StatusCode == http.StatusNotFound && resp.Code != "NoSuchBucket"
}

// unavailable reports whether err is an S3 answer that may not come again
// later: a server error, 429 (slow down) or 408 (request timeout).
func unavailable(err error) bool {
	c := minio.ToErrorResponse(err).StatusCode
	return c >= http.StatusInternalServerError || c == http.StatusTooManyRequests || c == http.StatusRequestTimeout
}

// wrap turns a client error into one that names the artifact and, for a
// missing object, matches artifact.ErrNotFound, and for a store that may
// answer later, artifact.ErrUnavailable.
func (s *Store) wrap(uri string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("artifact %s: %w", uri, artifact.ErrNotFound)
	}
	if minio.ToErrorResponse(err).Code == "NoSuchBucket" {
		return fmt.Errorf("artifact %s: bucket %q does not exist; create it or fix the store location: %w", uri, s.bucket, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("artifact %s: %w", uri, err)
	}
	if unavailable(err) {
		return fmt.Errorf("artifact %s: S3: %w (%w)", uri, err, artifact.ErrUnavailable)
	}
	return fmt.Errorf("artifact %s: S3: %w", uri, err)
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
