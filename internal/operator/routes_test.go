package operator_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/discovery"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/storetest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The admin API's route objects in a cluster are the namespace's
// ModelRoutes: the store passes the conformance suite, kubectl sees what
// the API writes and the other way round, and the CRD refuses what the
// API would.
func TestRouteStoreIsModelRoutes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	t.Run("conformance", func(t *testing.T) {
		storetest.RunRoutes(t, func(t *testing.T) store.RouteStore {
			return operator.NewRouteStore(e.cl, e.cl, e.c.Namespace(t))
		})
	})

	st := operator.NewRouteStore(e.cl, e.cl, e.ns)
	if _, err := st.CreateRoute(ctx, storetest.Route("classify")); err != nil {
		t.Fatal(err)
	}
	var mr v1alpha1.ModelRoute
	if err := e.cl.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "classify"}, &mr); err != nil || mr.Spec.Default != "classify-global" {
		t.Fatalf("the API's route is not a ModelRoute: %v %+v", err, mr.Spec)
	}
	e.kubectl(t, "patch", "modelroute", "classify", "--type=merge", "-p", `{"spec":{"default":"elsewhere"}}`)
	if got, err := st.GetRoute(ctx, "classify"); err != nil || got.Spec.Default != "elsewhere" || got.Generation != 2 {
		t.Errorf("after kubectl patch: %+v %v, want default elsewhere at generation 2", got, err)
	}
	if out := e.kubectl(t, "get", "mr", "classify", "-o", "jsonpath={.spec.match.header}"); out != "X-Region" {
		t.Errorf("kubectl sees match.header %q", out)
	}

	// The CRD refuses what serving.Route.Validate refuses, where it can.
	for _, bad := range []serving.RouteSpec{
		{Match: serving.RouteMatch{Header: "X", Input: "y"}, Default: "d"},
		{Match: serving.RouteMatch{}, Default: "d"},
		{Match: serving.RouteMatch{Header: "X"}, Rules: []serving.RouteRule{{Value: "a", Deployment: "d"}, {Value: "a", Deployment: "e"}}},
	} {
		mr := &v1alpha1.ModelRoute{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: e.ns}, Spec: v1alpha1.ModelRouteSpec{RouteSpec: bad}}
		if err := e.cl.Create(ctx, mr); err == nil {
			t.Errorf("the API server took a ModelRoute with spec %+v", bad)
			_ = e.cl.Delete(ctx, mr)
		}
	}

	// Through the API handler: a route may not take a ModelDeployment's
	// name, and the answers are ebb up's.
	apiStore := operator.NewAPIStore(e.cl, e.cl, e.ns)
	if _, err := apiStore.CreateDeployment(ctx, serving.Deployment{Name: "echo", Spec: serving.Spec{Model: "x", Engine: "echo", Scaling: scaling()}}); err != nil {
		t.Fatal(err)
	}
	h := api.New(apiStore, nopController{}, nil)
	h.MountRoutes(st, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, tt := range []struct {
		body string
		want int
	}{
		{`{"name":"echo","spec":{"match":{"header":"X"},"default":"d"}}`, http.StatusConflict},
		{`{"name":"tasks","spec":{"match":{"input":"task"},"rules":[{"value":"vision","deployment":"echo"}]}}`, http.StatusCreated},
		{`{"name":"tasks","spec":{"match":{"input":"task"},"default":"echo"}}`, http.StatusConflict},
	} {
		resp, err := http.Post(srv.URL+"/v1/routes", "application/json", strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("POST %s = %d, want %d", tt.body, resp.StatusCode, tt.want)
		}
	}

	down := operator.NewRouteStore(unreachable{}, unreachable{}, e.ns)
	if _, err := down.ListRoutes(ctx); !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "Kubernetes API server") {
		t.Errorf("list with the API server down: %v, want ErrUnavailable naming it", err)
	}
}

// TestModelRoutesReachGateways: a gateway's watch (discovery.ModelRoutes)
// fills its table with the ModelRoutes the admin API writes, and follows
// their changes and deletions.
func TestModelRoutesReachGateways(t *testing.T) {
	e := newEnv(t)
	opts := discovery.ModelRoutesCacheOptions(e.ns)
	opts.Scheme = e.scheme
	c, err := cache.New(e.c.RESTConfig(), opts)
	if err != nil {
		t.Fatal(err)
	}
	table := &routing.Shards{}
	watch := discovery.NewModelRoutes(c, e.ns, table, e.log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- watch.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-watch.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("ModelRoutes did not sync")
	}

	st := operator.NewRouteStore(e.cl, e.cl, e.ns)
	target := func(value string) func() string {
		return func() string {
			sh := table.Lookup("classify")
			if sh == nil {
				return "(no route)"
			}
			d, _ := sh.Target([]byte(value), value != "")
			return d
		}
	}
	eventually := func(what string, got func() string, want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for got() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %q, want %q", what, got(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, err := st.CreateRoute(ctx, storetest.Route("classify")); err != nil {
		t.Fatal(err)
	}
	eventually("created: eu", target("eu"), "classify-eu")
	eventually("created: no value", target(""), "classify-global")
	if _, err := st.UpdateRoute(ctx, "classify", func(r *serving.Route) error {
		r.Spec.Rules[0].Deployment = "classify-eu-2"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually("updated: eu", target("eu"), "classify-eu-2")
	if err := st.DeleteRoute(ctx, "classify"); err != nil {
		t.Fatal(err)
	}
	eventually("deleted", target("eu"), "(no route)")
}
