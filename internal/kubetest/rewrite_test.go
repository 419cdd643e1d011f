package kubetest

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"plain":         "plain",
		"$(A)":          "1",
		"x-$(A)-$(B)-y": "x-1-two-y",
		"$(C)":          "$(C)",
		"$$(A)":         "$(A)",
		"$A":            "$A",
		"$(A":           "$(A",
		"cost: 5$":      "cost: 5$",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestRewriter(t *testing.T) {
	p := newServiceProxy(nil, netip.MustParsePrefix("127.130.0.0/16"), t.Logf)
	p.services = cache.NewStore(cache.MetaNamespaceKeyFunc)
	for _, svc := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ebb-operator"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "db"}},
	} {
		if err := p.services.Add(svc); err != nil {
			t.Fatal(err)
		}
	}
	op := p.addr("ns", "ebb-operator").String() // 127.130.0.1
	db := p.addr("other", "db").String()
	r := &rewriter{ns: "ns", podIP: "127.64.0.9", services: p, mounts: []mount{
		{path: "/var/lib/ebb/artifacts", dir: "/local/claim"},
		{path: "/var/lib/ebb", dir: "/local/data"},
		{path: "/tmp", dir: "/local/tmp"},
	}}
	ctx := context.Background()
	got := r.args(ctx, []string{"/bin/ebb", "operator",
		"--addr=:8090", "--grpc-addr", "0.0.0.0:8081", "--metrics-addr=[::]:9090", "--admin-addr=127.0.0.1:1",
		"--grpc-addr=", "--address=:1",
		"--data-dir=/var/lib/ebb", "--artifacts=file:///var/lib/ebb/artifacts/m", "/var/lib/ebbx", "/var/lib/ebb/x",
		"--operator-url=http://ebb-operator.ns.svc:8090", "http://ebb-operator.ns.svc.cluster.local/v1",
		"http://ebb-operator:8090/x", "http://db.other:5432", "postgres://u:p@db.other.svc:5432/x",
		"http://ebb-operator.ns.svc.example.com", "a.ebb-operator.ns.svc", "http://unknown:1", "http://127.0.0.1:1",
	})
	want := []string{"/bin/ebb", "operator",
		"--addr=127.64.0.9:8090", "--grpc-addr", "127.64.0.9:8081", "--metrics-addr=127.64.0.9:9090", "--admin-addr=127.0.0.1:1",
		"--grpc-addr=", "--address=:1",
		"--data-dir=/local/data", "--artifacts=file:///local/claim/m", "/var/lib/ebbx", "/local/data/x",
		"--operator-url=http://" + op + ":8090", "http://" + op + "/v1",
		"http://" + op + ":8090/x", "http://" + db + ":5432", "postgres://u:p@" + db + ":5432/x",
		"http://ebb-operator.ns.svc.example.com", "a.ebb-operator.ns.svc", "http://unknown:1", "http://127.0.0.1:1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	// A test's own file under a mount path stays.
	dir := t.TempDir()
	if got := r.value(ctx, dir); got != dir {
		t.Errorf("existing %s rewritten to %s", dir, got)
	}
	if got := r.value(ctx, "/tmp/not-there"); got != "/local/tmp/not-there" {
		t.Errorf("/tmp/not-there = %s", got)
	}
}

func TestServiceCIDR(t *testing.T) {
	if got := serviceCIDR4("127.64.0.0/16").String(); got != "127.128.0.0/16" {
		t.Errorf("service CIDR of 127.64.0.0/16 = %s", got)
	}
	if got := serviceCIDR4("127.127.0.0/16").String(); got != "127.191.0.0/16" {
		t.Errorf("service CIDR of 127.127.0.0/16 = %s", got)
	}
}
