package python_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/artifact/file"
	"github.com/ebb-ml/ebb/internal/registry"
	"golang.org/x/sys/unix"
)

// A Python replica of a registry artifact: `ebb replica` fetches the tar
// through the cache and holds the cache entry while its workers serve it
// (eviction cannot take it), and reports the fetch in its readiness notice,
// as for the Go engines.
func TestRegistryArtifact(t *testing.T) {
	requirePython(t, "numpy")
	dir := t.TempDir()
	src, err := os.ReadFile(testdata(t, "echo.py"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "echo.py"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	var tarball bytes.Buffer
	if err := registry.WriteTar(&tarball, dir); err != nil {
		t.Fatal(err)
	}
	store, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ref, err := store.Put(context.Background(), &tarball)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	p := startReplica(t, nil, "--deployment", "echo", "--model", ref.URI, "--model-sha256", ref.SHA256,
		"--model-unpack", "--artifact-cache", cache, "--python-class", "echo.py:Model")
	if err := p.notice.Err(); err != nil {
		t.Fatal(err)
	}
	a := p.notice.Artifact
	if a == nil || a.CacheHit || a.Bytes != int64(len(src)) || a.FetchedAt.IsZero() {
		t.Fatalf("notice reports the fetch as %+v, want a miss of %d bytes", a, len(src))
	}
	entry := filepath.Join(cache, filepath.FromSlash(artifact.Key(ref.SHA256))) + ".d"
	f, err := os.Open(entry)
	if err != nil {
		t.Fatalf("the cache has no entry for the artifact: %v", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		t.Fatal("the cache entry is not leased while the workers serve it: eviction could delete it")
	}
}
