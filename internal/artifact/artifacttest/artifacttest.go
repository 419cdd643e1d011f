// Package artifacttest is the conformance suite every artifact.Store
// passes, and helpers for tests that need a real S3 server.
package artifacttest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/artifact"
)

// Harness adapts one backend to the suite.
type Harness struct {
	// New returns a fresh, empty store.
	New func(t *testing.T) artifact.Store
	// Corrupt changes one byte of the stored object that uri names,
	// behind the store's back (as bit rot or a tampering hand would).
	Corrupt func(t *testing.T, uri string)
	// LargeSize is the size of the streamed-object test; default 64 MiB.
	LargeSize int64
	// Timeout bounds each test; default 2 minutes.
	Timeout time.Duration
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	if h.LargeSize == 0 {
		h.LargeSize = 64 << 20
	}
	if h.Timeout == 0 {
		h.Timeout = 2 * time.Minute
	}
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"RoundTrip", testRoundTrip},
		{"IdempotentPut", testIdempotentPut},
		{"Missing", testMissing},
		{"Delete", testDelete},
		{"LargeObjectStreamed", testLarge},
		{"DirectoryRoundTrip", testDirectory},
		{"CorruptRefused", testCorrupt},
		{"CorruptDirectoryRefused", testCorruptDir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, h) })
	}
}

func (h Harness) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	t.Cleanup(cancel)
	return ctx
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func readAll(t *testing.T, ctx context.Context, s artifact.Store, uri string) []byte {
	t.Helper()
	rc, err := s.Open(ctx, uri)
	if err != nil {
		t.Fatalf("Open(%s): %v", uri, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s: %v", uri, err)
	}
	return b
}

func testRoundTrip(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"small", []byte("a model, in bytes\n")},
		{"empty", []byte{}},
		{"binary", bytes.Repeat([]byte{0, 1, 2, 0xff}, 4099)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, s := h.ctx(t), h.New(t)
			ref, err := s.Put(ctx, bytes.NewReader(tc.data))
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			want := artifact.Ref{URI: ref.URI, SHA256: sum(tc.data), Size: int64(len(tc.data))}
			if diff := cmp.Diff(want, ref); diff != "" {
				t.Errorf("Put ref (-want +got):\n%s", diff)
			}
			if !strings.HasSuffix(ref.URI, "/"+artifact.Key(want.SHA256)) {
				t.Errorf("URI %s does not end in the content key %s", ref.URI, artifact.Key(want.SHA256))
			}
			if got, ok := artifact.SHA256FromURI(ref.URI); !ok || got != want.SHA256 {
				t.Errorf("SHA256FromURI(%s) = %q, %v; want %s", ref.URI, got, ok, want.SHA256)
			}
			if got := readAll(t, ctx, s, ref.URI); !bytes.Equal(got, tc.data) {
				t.Errorf("Open returned %d bytes, want the %d put", len(got), len(tc.data))
			}
			st, err := s.Stat(ctx, ref.URI)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if diff := cmp.Diff(ref, st); diff != "" {
				t.Errorf("Stat (-put +stat):\n%s", diff)
			}
			rc, err := artifact.OpenVerified(ctx, s, ref.URI, "")
			if err != nil {
				t.Fatalf("OpenVerified: %v", err)
			}
			defer rc.Close()
			if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, tc.data) {
				t.Errorf("OpenVerified read %d bytes, err %v; want %d bytes, no error", len(got), err, len(tc.data))
			}
		})
	}
}

func testIdempotentPut(t *testing.T, h Harness) {
	ctx, s := h.ctx(t), h.New(t)
	data := []byte("same bytes twice")
	first, err := s.Put(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("first Put: %v", err)
	}
	second, err := s.Put(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("second Put: %v", err)
	}
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("second Put of identical content (-first +second):\n%s", diff)
	}
	other, err := s.Put(ctx, strings.NewReader("different bytes"))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if other.URI == first.URI {
		t.Errorf("different content got the same URI %s", other.URI)
	}
	if got := readAll(t, ctx, s, first.URI); !bytes.Equal(got, data) {
		t.Errorf("after a second Put the artifact reads %q, want %q", got, data)
	}
}

func testMissing(t *testing.T, h Harness) {
	ctx, s := h.ctx(t), h.New(t)
	// Learn the store's URI shape from a real Put, then name content that
	// was never stored.
	ref, err := s.Put(ctx, strings.NewReader("present"))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	absent := sum([]byte("never stored"))
	uri := strings.TrimSuffix(ref.URI, artifact.Key(ref.SHA256)) + artifact.Key(absent)
	if rc, err := s.Open(ctx, uri); !errors.Is(err, artifact.ErrNotFound) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("Open(missing) error = %v, want one matching ErrNotFound", err)
	}
	if _, err := s.Stat(ctx, uri); !errors.Is(err, artifact.ErrNotFound) {
		t.Errorf("Stat(missing) error = %v, want one matching ErrNotFound", err)
	}
	if err := s.Delete(ctx, uri); err != nil {
		t.Errorf("Delete(missing) = %v, want nil", err)
	}
}

func testDelete(t *testing.T, h Harness) {
	ctx, s := h.ctx(t), h.New(t)
	data := []byte("to be deleted")
	ref, err := s.Put(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	keep, err := s.Put(ctx, strings.NewReader("to be kept"))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if err := s.Delete(ctx, ref.URI); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Stat(ctx, ref.URI); !errors.Is(err, artifact.ErrNotFound) {
		t.Errorf("Stat after Delete error = %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx, keep.URI); err != nil {
		t.Errorf("Delete removed another artifact: Stat = %v", err)
	}
	again, err := s.Put(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Put after Delete: %v", err)
	}
	if again != ref {
		t.Errorf("Put after Delete = %+v, want %+v", again, ref)
	}
	if got := readAll(t, ctx, s, ref.URI); !bytes.Equal(got, data) {
		t.Errorf("after re-Put the artifact reads %q, want %q", got, data)
	}
}

// stream yields n deterministic pseudo-random bytes without holding them.
func stream(n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{'e', 'b', 'b'}), n)
}

func testLarge(t *testing.T, h Harness) {
	ctx, s := h.ctx(t), h.New(t)
	hw := sha256.New()
	if _, err := io.Copy(hw, stream(h.LargeSize)); err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(hw.Sum(nil))

	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	var ref artifact.Ref
	var err error
	putAlloc := allocated(func() { ref, err = s.Put(ctx, stream(h.LargeSize)) })
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if ref.SHA256 != want || ref.Size != h.LargeSize {
		t.Fatalf("Put = %+v, want sha256 %s size %d", ref, want, h.LargeSize)
	}
	t.Logf("Put of %d bytes allocated %d bytes", h.LargeSize, putAlloc)
	// Streaming allocates small buffers; holding the artifact allocates at
	// least its size.
	if limit := uint64(h.LargeSize / 2); putAlloc > limit {
		t.Errorf("Put of %d bytes allocated %d bytes; it must stream, not buffer (limit %d)", h.LargeSize, putAlloc, limit)
	}
	var n int64
	openAlloc := allocated(func() {
		var rc io.ReadCloser
		rc, err = artifact.OpenVerified(ctx, s, ref.URI, ref.SHA256)
		if err != nil {
			return
		}
		defer rc.Close()
		n, err = io.Copy(io.Discard, rc)
	})
	if err != nil || n != h.LargeSize {
		t.Fatalf("reading back: %d bytes, %v; want %d bytes", n, err, h.LargeSize)
	}
	t.Logf("reading %d bytes back allocated %d bytes", h.LargeSize, openAlloc)
	if limit := uint64(h.LargeSize / 2); openAlloc > limit {
		t.Errorf("reading %d bytes allocated %d bytes; Open must stream, not buffer (limit %d)", h.LargeSize, openAlloc, limit)
	}
}

// writeTree creates files (relative path → content; a trailing "/" makes
// an empty directory; a name ending in ".sh" is made executable).
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree returns what writeTree would need to recreate dir.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			ents, err := os.ReadDir(p)
			if err == nil && len(ents) == 0 {
				got[rel+"/"] = ""
			}
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		if exec := fi.Mode()&0o111 != 0; exec != strings.HasSuffix(rel, ".sh") {
			rel += " (executable bit wrong)"
		}
		got[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

var modelDir = map[string]string{
	"MLmodel":                  "flavors:\n  xgboost:\n    model_file: model.xgb\n",
	"model.xgb":                "{\"learner\": {}}",
	"code/predict.py":          "def predict(x):\n    return x\n",
	"code/run.sh":              "#!/bin/sh\nexec python3 predict.py\n",
	"empty":                    "",
	"artifacts/":               "",
	"deep/er/and/deeper/x.txt": strings.Repeat("long name ", 20),
}

func testDirectory(t *testing.T, h Harness) {
	ctx, s := h.ctx(t), h.New(t)
	src := t.TempDir()
	writeTree(t, src, modelDir)
	ref, err := artifact.PutDir(ctx, s, src)
	if err != nil {
		t.Fatalf("PutDir: %v", err)
	}
	// The tar is deterministic: another copy of the same tree, with other
	// times, stores the same artifact.
	copyDir := t.TempDir()
	writeTree(t, copyDir, modelDir)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(copyDir, "MLmodel"), old, old); err != nil {
		t.Fatal(err)
	}
	again, err := artifact.PutDir(ctx, s, copyDir)
	if err != nil {
		t.Fatalf("PutDir of a copy: %v", err)
	}
	if again != ref {
		t.Errorf("PutDir of an identical tree = %+v, want %+v (the tar must be deterministic)", again, ref)
	}

	cache, err := artifact.NewCache(t.TempDir(), s, artifact.CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := cache.FetchDir(ctx, ref.URI, ref.SHA256)
	if err != nil {
		t.Fatalf("FetchDir: %v", err)
	}
	defer lease.Release()
	if diff := cmp.Diff(modelDir, readTree(t, lease.Path)); diff != "" {
		t.Errorf("fetched directory (-put +fetched):\n%s", diff)
	}
}

// cacheFiles lists every regular file under the cache directory.
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func testCorrupt(t *testing.T, h Harness) {
	ctx, s := h.ctx(t), h.New(t)
	ref, err := s.Put(ctx, strings.NewReader("weights that must not change"))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	h.Corrupt(t, ref.URI)

	cacheDir := t.TempDir()
	cache, err := artifact.NewCache(cacheDir, s, artifact.CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := cache.Fetch(ctx, ref.URI, ref.SHA256)
	if err == nil {
		lease.Release()
		t.Fatalf("Fetch of a corrupt artifact succeeded with %s", lease.Path)
	}
	checkChecksumError(t, err, ref)
	if files := cacheFiles(t, cacheDir); len(files) != 0 {
		t.Errorf("a refused fetch left files in the cache: %q", files)
	}

	rc, err := artifact.OpenVerified(ctx, s, ref.URI, "")
	if err != nil {
		t.Fatalf("OpenVerified: %v", err)
	}
	defer rc.Close()
	_, err = io.ReadAll(rc)
	checkChecksumError(t, err, ref)
}

func testCorruptDir(t *testing.T, h Harness) {
	ctx, s := h.ctx(t), h.New(t)
	src := t.TempDir()
	writeTree(t, src, modelDir)
	ref, err := artifact.PutDir(ctx, s, src)
	if err != nil {
		t.Fatalf("PutDir: %v", err)
	}
	h.Corrupt(t, ref.URI)
	cacheDir := t.TempDir()
	cache, err := artifact.NewCache(cacheDir, s, artifact.CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := cache.FetchDir(ctx, ref.URI, "")
	if err == nil {
		lease.Release()
		t.Fatalf("FetchDir of a corrupt artifact succeeded with %s", lease.Path)
	}
	checkChecksumError(t, err, ref)
	if files := cacheFiles(t, cacheDir); len(files) != 0 {
		t.Errorf("a refused fetch left files in the cache: %q", files)
	}
}

func checkChecksumError(t *testing.T, err error, ref artifact.Ref) {
	t.Helper()
	var ce *artifact.ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v, want a *artifact.ChecksumError", err)
	}
	if ce.URI != ref.URI || ce.Want != ref.SHA256 || !artifact.ValidSHA256(ce.Got) || ce.Got == ce.Want {
		t.Errorf("ChecksumError = %+v, want URI %s, want %s and another valid got", ce, ref.URI, ref.SHA256)
	}
	for _, part := range []string{ref.URI, "checksum mismatch", "want sha256 " + ref.SHA256, "corrupt or was replaced"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not mention %q", err, part)
		}
	}
}

// FlipByte inverts one byte in the middle of the file at path.
func FlipByte(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		// Stores may keep objects read-only; the test owns them.
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatalf("corrupting %s: %v", path, err)
		}
		if f, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
			t.Fatalf("corrupting %s: %v", path, err)
		}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		t.Fatalf("corrupting %s: size %v, %v", path, fi, err)
	}
	off := fi.Size() / 2
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
