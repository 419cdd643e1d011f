package main

import (
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/ebbtest"
)

// The replica binary stays small only while Kubernetes' packages stay out
// of it: linked in, their package data keeps tens of MiB resident in every
// replica. So does the S3 client (its init alone allocates 0.3 MB). Built
// as make build builds it, it must not link gRPC's tracing either
// (html/template keeps every exported method of every type).
func TestNoKubernetesDependencies(t *testing.T) {
	for _, tt := range []struct {
		name      string
		flags     []string
		forbidden func(pkg string) bool
		why       string
	}{
		{
			name: "kubernetes",
			forbidden: func(pkg string) bool {
				// k8s.io/utils/clock is an interface over package time,
				// used as the injected clock; it imports the standard
				// library only (checked below).
				return pkg != "k8s.io/utils/clock" && (strings.HasPrefix(pkg, "k8s.io/") || strings.HasPrefix(pkg, "sigs.k8s.io/") ||
					strings.Contains(pkg, "controller-runtime") || pkg == "github.com/ebb-ml/ebb/internal/serving")
			},
			why: "import github.com/ebb-ml/ebb/internal/serving/core, not internal/serving (the whole spec, with its pod settings and resource quantities), and keep client-go out of the replica's packages",
		},
		{
			name: "s3",
			forbidden: func(pkg string) bool {
				return strings.HasPrefix(pkg, "github.com/minio/") || pkg == "github.com/ebb-ml/ebb/internal/artifact/s3"
			},
			why: "a replica reads s3:// artifacts through `ebb fetch-artifact` (internal/artifact/fetcher), so that no idle replica keeps the S3 client resident; use replicacmd's artifactSource, not artifact/backend",
		},
		{
			name:      "make build",
			flags:     []string{"-tags", "grpcnotrace"},
			forbidden: func(pkg string) bool { return pkg == "golang.org/x/net/trace" || pkg == "html/template" },
			why:       "something imports gRPC's tracing or html/template despite -tags grpcnotrace",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			deps := ebbtest.GoList(t, append(append([]string{"-deps"}, tt.flags...), ".")...)
			if bad := ebbtest.Forbidden(deps, tt.forbidden); bad != "" {
				t.Errorf("cmd/ebb-replica depends on %s: %s", bad, tt.why)
			}
		})
	}
	t.Run("k8s.io/utils/clock", func(t *testing.T) {
		std := map[string]bool{}
		for _, p := range ebbtest.GoList(t, "-f", "{{if .Standard}}{{.ImportPath}}{{end}}", "-deps", "k8s.io/utils/clock") {
			std[p] = true
		}
		for _, p := range ebbtest.GoList(t, "-deps", "k8s.io/utils/clock") {
			if !std[p] && p != "k8s.io/utils/clock" {
				t.Errorf("k8s.io/utils/clock now depends on %s: it is allowed in the replica only while it needs the standard library alone", p)
			}
		}
	})
}
