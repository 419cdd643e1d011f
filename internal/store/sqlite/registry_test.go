package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/registry/registrytest"
)

func TestRegistryConformance(t *testing.T) {
	registrytest.Run(t, func(t *testing.T) registry.Store {
		return openT(t, filepath.Join(t.TempDir(), "ebb.db"))
	})
}

func TestRegistryConformanceInMemory(t *testing.T) {
	registrytest.Run(t, func(t *testing.T) registry.Store {
		return openT(t, ":memory:")
	})
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct{ in, want string }{
		{"m-", "m."},
		{"a", "b"},
		{"a\xff", "b"},
		{"\xff", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := prefixEnd(tt.in); got != tt.want {
			t.Errorf("prefixEnd(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
