package main

import (
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/ebbtest"
)

// TestNoKubernetesClients keeps Kubernetes' client libraries and API types
// out of ebb: linked in, their package data (API schemes, registered
// types) keeps tens of MiB resident in `ebb up` and in every CLI command
// (k8s.io/api alone about 7 MiB). The operator and the gateway, which need
// them, are cmd/ebb-cluster, which `ebb operator` and `ebb gateway` exec;
// a deployment's pod settings are serving's own types.
func TestNoKubernetesClients(t *testing.T) {
	deps := ebbtest.GoList(t, "-deps", ".")
	forbidden := func(pkg string) bool {
		return strings.HasPrefix(pkg, "k8s.io/client-go/") || strings.HasPrefix(pkg, "sigs.k8s.io/controller-runtime") ||
			strings.HasPrefix(pkg, "k8s.io/api/")
	}
	if bad := ebbtest.Forbidden(deps, forbidden); bad != "" {
		t.Errorf("cmd/ebb depends on %s: code that talks to a cluster belongs in cmd/ebb-cluster (or a package only it imports)", bad)
	}
}
