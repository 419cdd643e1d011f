package replicacmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/artifact/file"
)

// A replica fetches a registry artifact through the shared cache: the first
// fetch downloads and verifies it, a second replica on the same host (same
// cache directory) hits, and a digest that does not match is refused.
func TestFetchModelThroughCache(t *testing.T) {
	ctx := context.Background()
	store, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	model := []byte(`{"learner":"not really a model, just bytes"}`)
	ref, err := store.Put(ctx, bytes.NewReader(model))
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	flags := fetchFlags{sha256: ref.SHA256, cacheDir: cache, cacheMaxBytes: 1 << 20}

	first, err := fetchModel(ctx, nil, ref.URI, flags)
	if err != nil {
		t.Fatal(err)
	}
	defer first.close()
	if first.info == nil || first.info.CacheHit || first.info.Bytes != int64(len(model)) {
		t.Fatalf("first fetch: got %+v, want a miss of %d bytes", first.info, len(model))
	}
	if got, err := os.ReadFile(first.path); err != nil || !bytes.Equal(got, model) {
		t.Fatalf("first fetch: %s holds %q (%v), want the model", first.path, got, err)
	}
	if !strings.HasPrefix(first.path, cache) {
		t.Errorf("first fetch: path %s is not in the cache %s", first.path, cache)
	}

	second, err := fetchModel(ctx, nil, ref.URI, flags)
	if err != nil {
		t.Fatal(err)
	}
	defer second.close()
	if second.info == nil || !second.info.CacheHit || second.info.Bytes != int64(len(model)) || second.path != first.path {
		t.Fatalf("second fetch: got %+v at %s, want a hit of %d bytes at %s", second.info, second.path, len(model), first.path)
	}

	bad := flags
	bad.sha256 = strings.Repeat("0", 64)
	bad.cacheDir = t.TempDir()
	if _, err := fetchModel(ctx, nil, ref.URI, bad); err == nil {
		t.Fatal("a digest that does not match the URI's was accepted")
	}
}

func TestFetchModelPathsAndErrors(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "m.json")
	if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, model string
		flags       fetchFlags
		wantPath    string
		wantErr     string
	}{
		{name: "path", model: p, wantPath: p},
		{name: "file URI", model: "file://" + p, wantPath: p},
		{name: "file URI with a host", model: "file://host" + p, wantErr: "three slashes"},
		{name: "digest on a path", model: p, flags: fetchFlags{sha256: strings.Repeat("a", 64)}, wantErr: "needs --model to be an artifact URI"},
		{name: "no cache dir", model: "file://" + p, flags: fetchFlags{sha256: strings.Repeat("a", 64)}, wantErr: "no artifact cache"},
		{name: "unknown scheme", model: "gs://bucket/m.json", wantErr: `unsupported scheme "gs"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(ArtifactCacheEnv, "")
			got, err := fetchModel(ctx, nil, tc.model, tc.flags)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer got.close()
			if got.path != tc.wantPath || got.info != nil {
				t.Errorf("got %s %+v, want %s used in place", got.path, got.info, tc.wantPath)
			}
		})
	}
}
