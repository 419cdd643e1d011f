package file_test

import (
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/artifact/artifacttest"
	"github.com/ebb-ml/ebb/internal/artifact/file"
)

func newStore(t *testing.T) *file.Store {
	t.Helper()
	s, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	var stores []*file.Store
	artifacttest.Run(t, artifacttest.Harness{
		New: func(t *testing.T) artifact.Store {
			s := newStore(t)
			stores = append(stores, s)
			return s
		},
		Corrupt: func(t *testing.T, uri string) {
			s := stores[len(stores)-1]
			p, err := s.Path(uri)
			if err != nil {
				t.Fatal(err)
			}
			artifacttest.FlipByte(t, p)
		},
	})
}

func TestURIsOutsideTheRootAreRefused(t *testing.T) {
	s := newStore(t)
	for _, uri := range []string{
		"file:///etc/passwd",
		"file://" + s.Root() + "/../x/sha256/ab/" + strings.Repeat("ab", 32),
		"file://" + s.Root(),
		"s3://bucket/sha256/ab/" + strings.Repeat("ab", 32),
		"file://otherhost" + s.Root() + "/sha256/ab/" + strings.Repeat("ab", 32),
	} {
		t.Run(uri, func(t *testing.T) {
			if _, err := s.Open(t.Context(), uri); err == nil {
				t.Errorf("Open(%s) succeeded, want an error", uri)
			}
			if err := s.Delete(t.Context(), uri); err == nil {
				t.Errorf("Delete(%s) succeeded, want an error", uri)
			}
		})
	}
}

func TestNewRequiresAbsoluteRoot(t *testing.T) {
	if _, err := file.New("relative/dir"); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("New(relative) error = %v, want one about an absolute path", err)
	}
}
