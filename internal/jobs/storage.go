package jobs

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"

	"github.com/ebb-ml/ebb/internal/artifact/s3"
)

// Storage reads datasets and writes results on file:// (or a plain path)
// and s3://. Its S3 client is made on first use from the artifact store's
// configuration (s3.Options, the environment's defaults), so a job reaches
// the buckets that ebb's model artifacts do.
type Storage struct {
	// S3 configures the S3 client; empty fields fall back to the
	// environment as the artifact store's do.
	S3 s3.Options

	mu     sync.Mutex
	client *minio.Client // nil until first used
}

// loc is a parsed dataset location: a file path, or an S3 bucket and key.
type loc struct {
	uri         string
	path        string // for a file
	bucket, key string // for S3
}

func (l loc) isS3() bool { return l.bucket != "" }

// parseLoc reads file:///abs, a plain path or s3://bucket/key.
func parseLoc(uri string) (loc, error) {
	switch {
	case strings.HasPrefix(uri, "s3://"):
		u, err := url.Parse(uri)
		key := ""
		if err == nil {
			key = strings.TrimPrefix(u.Path, "/")
		}
		if err != nil || u.Host == "" || key == "" {
			return loc{}, fmt.Errorf("%q is not s3://bucket/key", uri)
		}
		return loc{uri: uri, bucket: u.Host, key: key}, nil
	case strings.HasPrefix(uri, "file://"):
		p := strings.TrimPrefix(uri, "file://")
		if !strings.HasPrefix(p, "/") {
			return loc{}, fmt.Errorf("%q must be file:///absolute/path", uri)
		}
		return loc{uri: uri, path: filepath.Clean(p)}, nil
	case strings.Contains(uri, "://"):
		return loc{}, fmt.Errorf("%q: only file:// and s3:// are supported", uri)
	case uri == "":
		return loc{}, errors.New("no location given")
	}
	return loc{uri: uri, path: filepath.Clean(uri)}, nil
}

func (st *Storage) s3Client() (*minio.Client, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.client == nil {
		c, err := s3.NewClient(st.S3)
		if err != nil {
			return nil, err
		}
		st.client = c
	}
	return st.client, nil
}

// object is an opened dataset: read in order (CSV, JSONL) or at offsets
// (Parquet).
type object interface {
	io.Reader
	io.ReaderAt
	io.Closer
}

// objectInfo says which version of a dataset was opened.
type objectInfo struct {
	size int64
	// version changes whenever the content may have: a file's size and
	// modification time, an object's ETag.
	version string
}

// open opens the dataset at l.
func (st *Storage) open(ctx context.Context, l loc) (object, objectInfo, error) {
	if !l.isS3() {
		f, err := os.Open(l.path)
		if err != nil {
			return nil, objectInfo{}, fmt.Errorf("input %s cannot be read: %w", l.uri, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, objectInfo{}, fmt.Errorf("input %s: %w", l.uri, err)
		}
		if fi.IsDir() {
			f.Close()
			return nil, objectInfo{}, fmt.Errorf("input %s is a directory: give a file", l.uri)
		}
		return f, objectInfo{size: fi.Size(), version: fmt.Sprintf("%d-%d", fi.Size(), fi.ModTime().UnixNano())}, nil
	}
	c, err := st.s3Client()
	if err != nil {
		return nil, objectInfo{}, err
	}
	o, err := c.GetObject(ctx, l.bucket, l.key, minio.GetObjectOptions{})
	if err != nil {
		return nil, objectInfo{}, s3Error("input", l, err)
	}
	info, err := o.Stat()
	if err != nil {
		o.Close()
		return nil, objectInfo{}, s3Error("input", l, err)
	}
	return o, objectInfo{size: info.Size, version: fmt.Sprintf("%d-%s", info.Size, info.ETag)}, nil
}

func s3Error(what string, l loc, err error) error {
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == "NoSuchBucket":
		return fmt.Errorf("%s %s: bucket %q does not exist", what, l.uri, l.bucket)
	case resp.Code == "NoSuchKey" || resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s %s does not exist", what, l.uri)
	case resp.Code == "AccessDenied":
		return fmt.Errorf("%s %s: access denied: check the S3 keys ebb runs with", what, l.uri)
	}
	return fmt.Errorf("%s %s: S3: %w", what, l.uri, err)
}

// checkWritable checks, before a job starts, that its output can be
// written: a file's directory exists, an S3 bucket exists.
func (st *Storage) checkWritable(ctx context.Context, l loc) error {
	if !l.isS3() {
		dir := filepath.Dir(l.path)
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() {
			return fmt.Errorf("output %s: directory %s does not exist: create it first", l.uri, dir)
		}
		return nil
	}
	c, err := st.s3Client()
	if err != nil {
		return err
	}
	ok, err := c.BucketExists(ctx, l.bucket)
	if err != nil {
		return s3Error("output", l, err)
	}
	if !ok {
		return fmt.Errorf("output %s: bucket %q does not exist", l.uri, l.bucket)
	}
	return nil
}

// publish writes the output at out with write, atomically: a file is
// written beside it and renamed into place, an S3 object is one PUT. A
// reader never sees a partial output.
func (st *Storage) publish(ctx context.Context, out loc, write func(w io.Writer) error) error {
	if !out.isS3() {
		return writeFileAtomic(out.path, write)
	}
	c, err := st.s3Client()
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, 1<<20)
		err := write(bw)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	_, err = c.PutObject(ctx, out.bucket, out.key, pr, -1, minio.PutObjectOptions{})
	pr.CloseWithError(errors.New("upload ended")) // stops the writer if the upload failed
	if err != nil {
		return s3Error("output", out, err)
	}
	return nil
}

// writeFileAtomic writes path through a temporary file in its directory,
// buffered, synced and renamed into place, the directory synced after.
func writeFileAtomic(path string, write func(w io.Writer) error) error {
	var b [6]byte
	_, _ = rand.Read(b[:])
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-"+hex.EncodeToString(b[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	_ = syncDir(filepath.Dir(path)) // the rename survives a crash
	return nil
}
