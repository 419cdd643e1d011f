package discovery

import (
	"context"
	"log/slog"
	"testing"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func modelRoute(name, ns string, spec serving.RouteSpec) *v1alpha1.ModelRoute {
	return &v1alpha1.ModelRoute{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1alpha1.ModelRouteSpec{RouteSpec: spec}}
}

// TestModelRoutesFill: the namespace's valid ModelRoutes fill the table;
// one that is not valid, and another namespace's, are left out.
func TestModelRoutesFill(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	header := serving.RouteMatch{Header: "X-Region"}
	fc := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		modelRoute("classify", "ns", serving.RouteSpec{Match: header, Rules: []serving.RouteRule{{Value: "eu", Deployment: "classify-eu"}}, Default: "classify-global"}),
		modelRoute("loop", "ns", serving.RouteSpec{Match: header, Default: "loop"}),
		modelRoute("elsewhere", "other", serving.RouteSpec{Match: header, Default: "d"}),
	).Build()
	table := &routing.Shards{}
	m := NewModelRoutes(objectCache{Client: fc}, "ns", table, slog.New(slog.DiscardHandler))
	ctx := t.Context()
	m.fill(ctx)
	sh := table.Lookup("classify")
	if sh == nil {
		t.Fatalf("table has %q, want classify", table.Names())
	}
	if got, ok := sh.Target([]byte("eu"), true); !ok || got != "classify-eu" {
		t.Errorf("classify sends eu to %q, %v", got, ok)
	}
	if table.Lookup("loop") != nil || table.Lookup("elsewhere") != nil {
		t.Errorf("table has %q: an invalid route, or another namespace's", table.Names())
	}

	// A change and a deletion reach the table on the next fill.
	mr := modelRoute("classify", "ns", serving.RouteSpec{Match: header, Default: "classify-us"})
	if err := fc.Get(ctx, client.ObjectKeyFromObject(mr), &v1alpha1.ModelRoute{}); err != nil {
		t.Fatal(err)
	}
	if err := fc.Delete(ctx, mr); err != nil {
		t.Fatal(err)
	}
	if err := fc.Create(ctx, mr); err != nil {
		t.Fatal(err)
	}
	m.fill(ctx)
	if got, _ := table.Lookup("classify").Target(nil, false); got != "classify-us" {
		t.Errorf("after the change, the default is %q, want classify-us", got)
	}
	if err := fc.Delete(ctx, mr); err != nil {
		t.Fatal(err)
	}
	m.fill(ctx)
	if table.Lookup("classify") != nil {
		t.Errorf("a deleted ModelRoute is still in the table")
	}
}

// noCRD is a cache of a cluster without the ModelRoute CRD.
type noCRD struct{ cache.Cache }

func (noCRD) GetInformer(context.Context, client.Object, ...cache.InformerGetOption) (cache.Informer, error) {
	return nil, &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "serving.ebb.dev", Kind: "ModelRoute"}}
}

// TestModelRoutesWithoutCRD: without the CRD, route objects are off and
// the gateway is not kept waiting for them.
func TestModelRoutesWithoutCRD(t *testing.T) {
	m := NewModelRoutes(noCRD{}, "ns", &routing.Shards{}, slog.New(slog.DiscardHandler))
	if err := m.Run(t.Context()); err != nil {
		t.Fatalf("Run without the CRD = %v, want nil", err)
	}
	select {
	case <-m.Synced():
	default:
		t.Error("Synced is not closed")
	}
}
