package operator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/examples/diabetes"
	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/discovery"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/gateway/gatewaytest"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

// clusterGateway is an in-cluster gateway (what `ebb gateway` runs) in this
// process.
type clusterGateway struct {
	url    string
	table  *routing.Table
	routes *discovery.Routes
}

// startGateway runs a gateway over the env's namespace that reports to the
// operator at operatorURL.
func (e *env) startGateway(t *testing.T, source discovery.Source, operatorURL string) *clusterGateway {
	t.Helper()
	copts := discovery.CacheOptions(e.ns, source)
	copts.Scheme = e.scheme
	c, err := cache.New(e.c.RESTConfig(), copts)
	if err != nil {
		t.Fatal(err)
	}
	table := &routing.Table{}
	routes := discovery.NewRoutes(c, e.ns, source, table, e.log)
	client := discovery.NewClient(operatorURL, nil)
	waker := discovery.NewWaker("gw-test", client, routes, e.log)
	act := activator.New(table, waker, activator.Options{Timeout: 90 * time.Second})
	url := gatewaytest.Serve(t, gateway.New(table, act, gateway.Options{HoldTimeout: 90 * time.Second, Logger: e.log}))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := routes.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("gateway routes: %v", err)
		}
	})
	wg.Go(func() {
		_ = (&discovery.Reporter{Gateway: "gw-test", Source: routes, Client: client, Logger: e.log}).Run(ctx)
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	select {
	case <-routes.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("gateway routes did not sync")
	}
	return &clusterGateway{url: url, table: table, routes: routes}
}

// TestGatewayEndToEnd sends a prediction through the in-cluster gateway to a
// ModelDeployment at zero: the gateway holds it and wakes the operator,
// which starts a replica pod (a real `ebb replica` process bound to the pod
// IP); the request is answered by the diabetes model; with no more demand
// the autoscaler scales back to zero.
func TestGatewayEndToEnd(t *testing.T) {
	e := newEnv(t)
	e.c.CreateNodes(t, 1, kubetest.NodeSpec{Prefix: "n-" + e.ns})
	model := filepath.Join(t.TempDir(), "diabetes.json")
	if err := os.WriteFile(model, diabetes.Model, 0o644); err != nil {
		t.Fatal(err)
	}
	md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "diabetes", Namespace: e.ns}}
	md.Spec.Model = model
	md.Spec.Engine = "trees"
	md.Spec.Scaling = scaling()
	md.Spec.Scaling.MaxReplicas = 2
	e.create(t, md)
	op := e.startOperator(t)
	opSrv := httptest.NewServer(op.op.Handler())
	defer opSrv.Close()
	gw := e.startGateway(t, discovery.FromPods, opSrv.URL)

	if rt := gw.table.Lookup("diabetes"); rt == nil || len(rt.Endpoints) != 0 {
		t.Fatalf("route of the deployment at zero: %+v, want a route with no endpoint", rt)
	}
	resp, err := http.Get(gw.url + "/v2/models/diabetes/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("model ready at zero: %s, want 200 (a request would start it)", resp.Status)
	}

	start := time.Now()
	out := infer(t, gw.url, "diabetes")
	t.Logf("cold request answered in %v", time.Since(start).Round(time.Millisecond))
	if diff := cmp.Diff([]float32{154.34579467773438, 178.2222442626953}, out); diff != "" {
		t.Errorf("predictions (-want +got):\n%s", diff)
	}
	pods := livePods(e.pods(t, "diabetes"))
	if len(pods) != 1 {
		t.Errorf("%d replica pods after one request, want 1", len(pods))
	}
	// Warm now: more requests go straight to the replica.
	for range 5 {
		infer(t, gw.url, "diabetes")
	}
	// Idle: the reports stop carrying demand and the autoscaler returns
	// to zero.
	e.waitStatus(t, "diabetes", 60*time.Second, "back to zero", func(st v1alpha1.ModelDeploymentStatus) bool {
		return st.Replicas == 0 && st.DesiredReplicas == 0
	})
	waitFor(t, 30*time.Second, "gateway route without endpoints", func() (bool, string) {
		rt := gw.table.Lookup("diabetes")
		return rt != nil && len(rt.Endpoints) == 0, fmt.Sprintf("route %+v", rt)
	})
	// And a request after that wakes it again.
	out = infer(t, gw.url, "diabetes")
	if len(out) != 2 {
		t.Errorf("second cold request: %v", out)
	}
	// Deleting the deployment removes its route.
	if err := e.cl.Delete(context.Background(), e.getMD(t, "diabetes")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "route removed", func() (bool, string) {
		return gw.table.Lookup("diabetes") == nil, "route still there"
	})
	resp, err = http.Post(gw.url+"/v2/models/diabetes/infer", "application/json", bytes.NewReader(diabetes.Request))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("request for a deleted deployment: %s, want 404", resp.Status)
	}
}

// infer posts the diabetes request and returns the predictions.
func infer(t *testing.T, base, model string) []float32 {
	t.Helper()
	resp, err := http.Post(base+"/v2/models/"+model+"/infer", "application/json", bytes.NewReader(diabetes.Request))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("infer %s: %s: %s", model, resp.Status, body)
	}
	var r struct {
		Outputs []struct {
			Data []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("infer response %s: %v", body, err)
	}
	if len(r.Outputs) != 1 {
		t.Fatalf("infer response has %d outputs: %s", len(r.Outputs), body)
	}
	return r.Outputs[0].Data
}

// TestGatewayRoutesFromEndpointSlices checks the default endpoint source
// against the real API server. The test cluster's pod IPs are loopback
// addresses, which the API server refuses in EndpointSlices, so the
// EndpointSlice controller cannot fill them; the slices here are written by
// the test, with documentation addresses (192.0.2.0/24) that nothing ever
// sends traffic to.
func TestGatewayRoutesFromEndpointSlices(t *testing.T) {
	e := newEnv(t)
	md := e.echoMD("sliced")
	md.Status.Conditions = nil
	e.create(t, md)
	gw := e.startGateway(t, discovery.FromEndpointSlices, "http://127.0.0.1:1")
	waitFor(t, 10*time.Second, "route at zero", func() (bool, string) {
		rt := gw.table.Lookup("sliced")
		return rt != nil && len(rt.Endpoints) == 0, fmt.Sprintf("%+v", rt)
	})
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "sliced-abc", Namespace: e.ns, Labels: map[string]string{
			operator.LabelDeployment:     "sliced",
			discoveryv1.LabelServiceName: "sliced",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"192.0.2.10"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "sliced-1"}},
			{Addresses: []string{"192.0.2.11"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "sliced-2"}},
		},
	}
	e.create(t, slice)
	waitFor(t, 10*time.Second, "endpoint from the slice", func() (bool, string) {
		rt := gw.table.Lookup("sliced")
		if rt == nil || len(rt.Endpoints) != 1 {
			return false, fmt.Sprintf("%+v", rt)
		}
		ep := rt.Endpoints[0]
		return ep.ID == "sliced-1" && ep.URL == "http://192.0.2.10:8080", ep.ID + " " + ep.URL
	})
	// A Failed condition reaches held requests once no endpoint is left.
	if err := e.cl.Delete(context.Background(), slice); err != nil {
		t.Fatal(err)
	}
	cur := e.getMD(t, "sliced")
	cur.Status.Conditions = []metav1.Condition{{
		Type: operator.ConditionFailed, Status: metav1.ConditionTrue, Reason: "ReplicasFailing",
		Message: "replicas fail to start: boom", LastTransitionTime: metav1.Now(),
	}}
	if err := e.cl.Status().Update(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "failure routed", func() (bool, string) {
		rt := gw.table.Lookup("sliced")
		return rt != nil && len(rt.Endpoints) == 0 && strings.Contains(rt.Failure, "boom"), fmt.Sprintf("%+v", rt)
	})
}

func ptr[T any](v T) *T { return &v }
