package backend_test

import (
	"os"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/artifact/backend"
	"github.com/ebb-ml/ebb/internal/artifact/file"
	"github.com/ebb-ml/ebb/internal/artifact/s3"
)

func TestOpen(t *testing.T) {
	tests := []struct {
		location string
		want     string // "file", "s3" or an error fragment
		loc      string // the store's Location
	}{
		{"file:///var/lib/ebb/artifacts", "file", "file:///var/lib/ebb/artifacts"},
		{"/var/lib/ebb/artifacts", "file", "file:///var/lib/ebb/artifacts"},
		{"s3://models/ebb/prod/", "s3", "s3://models/ebb/prod"},
		{"s3://models", "s3", "s3://models"},
		{"file://host/x", "three slashes", ""},
		{"relative/dir", "unsupported scheme", ""},
		{"gs://bucket", "unsupported scheme", ""},
	}
	for _, tt := range tests {
		t.Run(tt.location, func(t *testing.T) {
			st, err := backend.Open(tt.location, backend.Options{S3: s3.Options{Endpoint: "http://127.0.0.1:1"}})
			var kind, loc string
			switch st := st.(type) {
			case *file.Store:
				kind, loc = "file", st.Location()
			case *s3.Store:
				kind, loc = "s3", st.Location()
			}
			if tt.loc == "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Open error = %v, want one containing %q", err, tt.want)
				}
				return
			}
			if err != nil || kind != tt.want || loc != tt.loc {
				t.Fatalf("Open = %s store at %q, %v; want %s at %q", kind, loc, err, tt.want, tt.loc)
			}
		})
	}
}

func TestReaderOpensAnyStore(t *testing.T) {
	var refs []artifact.Ref
	for _, content := range []string{"in store one", "in store two"} {
		st, err := backend.Open(t.TempDir(), backend.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ref, err := st.Put(t.Context(), strings.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	c, err := artifact.NewCache(t.TempDir(), backend.Reader{}, artifact.CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"in store one", "in store two"} {
		l, err := c.Fetch(t.Context(), refs[i].URI, refs[i].SHA256)
		if err != nil {
			t.Fatalf("Fetch(%s): %v", refs[i].URI, err)
		}
		got, err := os.ReadFile(l.Path)
		l.Release()
		if err != nil || string(got) != want {
			t.Errorf("Fetch(%s) = %q, %v; want %q", refs[i].URI, got, err, want)
		}
	}
	if _, err := (backend.Reader{}).Open(t.Context(), "gs://b/k"); err == nil || !strings.Contains(err.Error(), "unsupported scheme") {
		t.Errorf("Open(gs://) error = %v, want unsupported scheme", err)
	}
}
