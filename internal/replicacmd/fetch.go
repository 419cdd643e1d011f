package replicacmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/artifact/fetcher"
	"github.com/ebb-ml/ebb/internal/artifact/file"
	"github.com/ebb-ml/ebb/internal/serving/core"
	"github.com/ebb-ml/ebb/internal/sibling"
	"github.com/spf13/pflag"
)

// ArtifactCacheEnv names the artifact cache directory a replica fetches
// into when --artifact-cache is not given: ebb up sets it to its host
// cache, and the operator to the node cache it mounts into replica pods.
const ArtifactCacheEnv = "EBB_ARTIFACT_CACHE"

// ArtifactCacheMaxEnv is the cache's size budget in bytes when
// --artifact-cache-max-bytes is not given; ebb up sets it from
// --cache-max-bytes.
const ArtifactCacheMaxEnv = "EBB_ARTIFACT_CACHE_MAX_BYTES"

// defaultArtifactCacheMax is the budget when neither says.
const defaultArtifactCacheMax = 10 << 30

// fetchFlags say which artifact a replica fetches before it loads it.
type fetchFlags struct {
	sha256        string // --model-sha256: --model is a content-addressed artifact URI
	unpack        bool   // --model-unpack: the artifact is a tar of a directory
	entry         string // --model-entry: the file inside that directory
	cacheDir      string
	cacheMaxBytes int64
	// retryFor bounds how long a fetch that fails for a passing reason
	// (the artifact store unreachable, or answering 5xx) is retried.
	retryFor time.Duration
}

func addFetchFlags(fl *pflag.FlagSet, f *fetchFlags) {
	fl.StringVar(&f.sha256, "model-sha256", "", "--model is an artifact URI (s3://, file://) with this SHA-256: fetch it through the artifact cache, verified, before loading")
	fl.BoolVar(&f.unpack, "model-unpack", false, "with --model-sha256: the artifact is a tar archive of a directory")
	fl.StringVar(&f.entry, "model-entry", "", "with --model-unpack: the file inside the directory the engine loads")
	fl.StringVar(&f.cacheDir, "artifact-cache", "", "artifact cache directory shared by the replicas of this host or node (default $"+ArtifactCacheEnv+")")
	fl.Int64Var(&f.cacheMaxBytes, "artifact-cache-max-bytes", 0, "size budget of the artifact cache; least recently used artifacts no replica uses are evicted (default $"+ArtifactCacheMaxEnv+", else 10 GiB)")
	fl.DurationVar(&f.retryFor, "fetch-retry-for", defaultFetchRetryFor, "retry a model fetch that fails because the artifact store is unreachable or answers 5xx, with backoff, for this long (0: no retries); a missing or corrupt artifact is never retried")
}

// fetched is a model artifact on local disk.
type fetched struct {
	path  string
	info  *core.ArtifactFetch // nil when the model was a local path
	close func()              // frees the cache lease or the temporary copy
}

// fetchModel makes the model --model names a local path. A local path (or
// file:// URI without --model-sha256) is used in place. A content-addressed
// artifact (--model-sha256) is fetched through the shared cache, verified,
// and leased until close, so no other process evicts it while this replica
// runs. Any other s3:// URI is downloaded into a private temporary file,
// removed at close: it has no digest to verify or share by. s3:// artifacts
// are read through `ebb fetch-artifact` (artifactSource). A download that
// fails because the store is unreachable is retried for f.retryFor
// (fetch_retry.go), with the retries logged to log (nil: not logged).
func fetchModel(ctx context.Context, log *slog.Logger, model string, f fetchFlags) (fetched, error) {
	none := fetched{path: model, close: func() {}}
	u, err := url.Parse(model)
	if err != nil || u.Scheme == "" || filepath.IsAbs(model) {
		if f.sha256 != "" {
			return fetched{}, fmt.Errorf("--model-sha256 needs --model to be an artifact URI (s3://bucket/key or file:///path), not %q", model)
		}
		return none, nil
	}
	src := artifactSource{fetcher: s3Fetcher}
	switch {
	case f.sha256 != "":
		return retryFetch(ctx, log, model, f.retryFor, func() (fetched, error) { return fetchCached(ctx, src, model, f) })
	case u.Scheme == "file":
		if u.Host != "" && u.Host != "localhost" {
			return fetched{}, fmt.Errorf("model %q: file URIs take three slashes and an absolute path, e.g. file:///models/m.json", model)
		}
		none.path = filepath.FromSlash(u.Path)
		return none, nil
	case u.Scheme == "s3":
		return retryFetch(ctx, log, model, f.retryFor, func() (fetched, error) { return fetchPrivate(ctx, src, model) })
	}
	return fetched{}, fmt.Errorf("model %q: unsupported scheme %q; use a path, file:///path, s3://bucket/key or a registry version (name:N, name@alias)", model, u.Scheme)
}

func fetchCached(ctx context.Context, src artifact.Opener, uri string, f fetchFlags) (fetched, error) {
	dir := f.cacheDir
	if dir == "" {
		dir = os.Getenv(ArtifactCacheEnv)
	}
	if dir == "" {
		return fetched{}, fmt.Errorf("no artifact cache to fetch %s into: give --artifact-cache DIR or set $%s", uri, ArtifactCacheEnv)
	}
	budget := f.cacheMaxBytes
	if budget <= 0 {
		budget = defaultArtifactCacheMax
		if v := os.Getenv(ArtifactCacheMaxEnv); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return fetched{}, fmt.Errorf("$%s=%q is not a positive number of bytes", ArtifactCacheMaxEnv, v)
			}
			budget = n
		}
	}
	cache, err := artifact.NewCache(dir, src, artifact.CacheOptions{MaxBytes: budget})
	if err != nil {
		return fetched{}, err
	}
	began := time.Now()
	sum, err := artifact.ExpectedSHA256(uri, f.sha256)
	if err != nil {
		return fetched{}, err
	}
	var lease *artifact.Lease
	if f.unpack {
		lease, err = cache.FetchDir(ctx, uri, sum)
	} else {
		lease, err = cache.Fetch(ctx, uri, sum)
	}
	if err != nil {
		return fetched{}, fmt.Errorf("fetch model artifact: %w", err)
	}
	path := lease.Path
	if f.entry != "" {
		path = filepath.Join(lease.Path, filepath.FromSlash(f.entry))
	}
	return fetched{
		path:  path,
		info:  fetchInfo(began, pathSize(lease.Path), lease.Hit),
		close: lease.Release,
	}, nil
}

// fetchPrivate downloads uri into a temporary file of its own.
func fetchPrivate(ctx context.Context, src artifact.Opener, uri string) (fetched, error) {
	began := time.Now()
	rc, err := src.Open(ctx, uri)
	if err != nil {
		return fetched{}, fmt.Errorf("fetch model %s: %w", uri, err)
	}
	defer rc.Close()
	dir, err := os.MkdirTemp("", "ebb-model-")
	if err != nil {
		return fetched{}, fmt.Errorf("fetch model %s: %w", uri, err)
	}
	name := filepath.Base(strings.TrimSuffix(uri, "/"))
	out, err := os.Create(filepath.Join(dir, name))
	if err == nil {
		var n int64
		n, err = io.Copy(out, rc)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			return fetched{
				path:  out.Name(),
				info:  fetchInfo(began, n, false),
				close: func() { os.RemoveAll(dir) },
			}, nil
		}
	}
	os.RemoveAll(dir)
	return fetched{}, fmt.Errorf("fetch model %s: %w", uri, err)
}

// pathSize is the size of a file, or of every file under a directory.
func pathSize(p string) int64 {
	var n int64
	_ = filepath.WalkDir(p, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func fetchInfo(began time.Time, bytes int64, hit bool) *core.ArtifactFetch {
	now := time.Now()
	return &core.ArtifactFetch{FetchedAt: now, Took: core.D(now.Sub(began)), Bytes: bytes, CacheHit: hit}
}

// FetchArtifactCommand is ebb's hidden command that writes an artifact to
// its standard output (package fetcher's Main): `ebb fetch-artifact URI`.
const FetchArtifactCommand = "fetch-artifact"

// artifactSource opens the artifact URIs a replica fetches: file:// ones in
// this process, and s3:// ones in a process of their own, the command
// fetcher returns (package fetcher), so that no replica keeps an S3
// client resident once its model is loaded.
type artifactSource struct {
	fetcher func() ([]string, error)
}

var _ artifact.Opener = artifactSource{}

// Open implements artifact.Opener.
func (s artifactSource) Open(ctx context.Context, uri string) (io.ReadCloser, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("artifact URI %q: %v", uri, err)
	}
	switch u.Scheme {
	case "file":
		st, err := file.New(string(filepath.Separator))
		if err != nil {
			return nil, err
		}
		return st.Open(ctx, uri)
	case "s3":
		argv, err := s.fetcher()
		if err != nil {
			return nil, fmt.Errorf("artifact %s: %w", uri, err)
		}
		return fetcher.Command{Argv: argv}.Open(ctx, uri)
	}
	return nil, fmt.Errorf("artifact URI %q: unsupported scheme %q; use file:///absolute/path or s3://bucket/key", uri, u.Scheme)
}

// s3Fetcher returns the command that fetches an s3:// artifact: `ebb
// fetch-artifact`, of the ebb beside this executable (make build's bin/,
// the image's /usr/local/bin), else on PATH. A variable for tests.
var s3Fetcher = func() ([]string, error) {
	ebb, err := sibling.Find("ebb")
	if err != nil {
		return nil, fmt.Errorf("s3:// artifacts are fetched by `ebb %s`, and there is %v: install ebb beside this replica binary", FetchArtifactCommand, err)
	}
	return []string{ebb, FetchArtifactCommand}, nil
}
