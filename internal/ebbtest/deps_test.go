package ebbtest

import (
	"fmt"
	"strings"
	"testing"
)

func TestForbidden(t *testing.T) {
	bad := func(p string) bool { return strings.HasPrefix(p, "k8s.io/") }
	many := []string{"fmt"}
	for i := range 8 {
		many = append(many, fmt.Sprintf("k8s.io/p%d", i))
	}
	for _, tt := range []struct {
		deps []string
		want string
	}{
		{[]string{"fmt", "os"}, ""},
		{[]string{"k8s.io/a", "fmt", "k8s.io/b"}, "k8s.io/a, k8s.io/b"},
		{many, "k8s.io/p2, k8s.io/p3, k8s.io/p4, k8s.io/p5, k8s.io/p6, k8s.io/p7 (and 2 more)"},
	} {
		if got := Forbidden(tt.deps, bad); got != tt.want {
			t.Errorf("Forbidden(%q) = %q, want %q", tt.deps, got, tt.want)
		}
	}
}
