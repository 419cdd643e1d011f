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
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/examples/diabetes"
	"github.com/ebb-ml/ebb/internal/discovery"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/serving"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// get sends GET base+path and returns the status and body.
func get(t *testing.T, base, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// post sends the diabetes request to base+path and returns the status and
// body.
func post(t *testing.T, base, path string) (int, string) {
	t.Helper()
	resp, err := http.Post(base+path, "application/json", bytes.NewReader(diabetes.Request))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPinnedZeroInTheCluster pins a ModelDeployment at zero and sends it
// requests through the in-cluster gateway and straight wake-ups to the
// operator: the requests get 503 deployment/scaled_to_zero and no pod ever
// starts. `kubectl scale` then pins it at 1 through the scale subresource
// (which reads while spec.replicas is unset, too), a request is served,
// removing the pin returns it to autoscaling, and `kubectl scale
// --replicas=0` stops its pod and refuses requests again.
func TestPinnedZeroInTheCluster(t *testing.T) {
	e := newEnv(t)
	e.c.CreateNodes(t, 1, kubetest.NodeSpec{Prefix: "n-" + e.ns})
	model := filepath.Join(t.TempDir(), "diabetes.json")
	if err := os.WriteFile(model, diabetes.Model, 0o644); err != nil {
		t.Fatal(err)
	}
	md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "pinned", Namespace: e.ns}}
	md.Spec.Model = model
	md.Spec.Engine = "trees"
	md.Spec.Scaling = scaling()
	zero := int32(0)
	md.Spec.Replicas = &zero
	e.create(t, md)
	op := e.startOperator(t)
	opSrv := httptest.NewServer(op.op.Handler())
	defer opSrv.Close()
	gw := e.startGateway(t, discovery.FromPods, opSrv.URL)
	waitFor(t, 10*time.Second, "scaled-to-zero route", func() (bool, string) {
		rt := gw.table.Lookup("pinned")
		return rt != nil && rt.ScaledToZero, fmt.Sprintf("%+v", rt)
	})

	for range 3 {
		code, body := post(t, gw.url, "/v2/models/pinned/infer")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "deployment/scaled_to_zero") || !strings.Contains(body, "ebb scale pinned --auto") {
			t.Fatalf("infer pinned at zero = %d %s; want 503 deployment/scaled_to_zero naming `ebb scale pinned --auto`", code, body)
		}
	}
	if code, body := get(t, gw.url, "/v2/models/pinned/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("ready pinned at zero = %d %s; want 503 not ready", code, body)
	}
	if code, body := get(t, gw.url, "/v2/models/pinned"); code != http.StatusServiceUnavailable || !strings.Contains(body, "scaled_to_zero") {
		t.Errorf("metadata pinned at zero = %d %s; want 503 scaled_to_zero", code, body)
	}
	// A gateway that has not seen the pin yet wakes the operator: the
	// control loop does not start a replica either.
	wake, err := http.Post(opSrv.URL+operator.WakePath+"pinned", "application/json", strings.NewReader(`{"gateway":"stale","inFlight":5}`))
	if err != nil {
		t.Fatal(err)
	}
	wake.Body.Close()
	e.waitStatus(t, "pinned", 10*time.Second, "pinned reason", func(st v1alpha1.ModelDeploymentStatus) bool {
		return strings.Contains(st.Reason, "scaled to zero by its owner")
	})
	time.Sleep(2 * time.Second)
	if pods, st := e.pods(t, "pinned"), e.getMD(t, "pinned").Status; len(pods) != 0 || st.DesiredReplicas != 0 {
		t.Fatalf("pinned at zero: %d pods, desired %d after requests and a wake-up; want none", len(pods), st.DesiredReplicas)
	}
	e.waitStatus(t, "pinned", 10*time.Second, "Ready False ScaledToZeroByOwner", func(st v1alpha1.ModelDeploymentStatus) bool {
		for _, c := range st.Conditions {
			if c.Type == operator.ConditionReady {
				return c.Status == metav1.ConditionFalse && c.Reason == "ScaledToZeroByOwner"
			}
		}
		return false
	})

	// kubectl scale pins 1 through the scale subresource.
	// (Scale's spec.replicas is omitted when 0.)
	if out := e.kubectl(t, "get", "modeldeployment", "pinned", "--subresource=scale", "-o", "jsonpath={.kind} {.spec.replicas}"); strings.TrimSpace(out) != "Scale" {
		t.Errorf("scale subresource of a deployment pinned at 0 = %q; want a Scale of 0 replicas", out)
	}
	e.kubectl(t, "scale", "modeldeployment/pinned", "--replicas=1")
	e.waitStatus(t, "pinned", 90*time.Second, "1 ready", func(st v1alpha1.ModelDeploymentStatus) bool { return st.ReadyReplicas == 1 })
	if out := infer(t, gw.url, "pinned"); len(out) != 2 {
		t.Errorf("predictions pinned at 1: %v", out)
	}

	// Removing the pin (a merge patch with null) returns to autoscaling:
	// idle, it scales to zero by itself, and a request wakes it again.
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":null}}`))
	if err := e.cl.Patch(context.Background(), e.getMD(t, "pinned"), patch); err != nil {
		t.Fatal(err)
	}
	if got := e.getMD(t, "pinned").Spec.Replicas; got != nil {
		t.Fatalf("spec.replicas after the null patch = %d; want unset", *got)
	}
	// The API server answers GET of the scale subresource with an error
	// while spec.replicas is unset (apiextensions' ScaleREST.Get: "the
	// spec replicas field does not exist"); nothing in a CRD can change
	// that short of always setting spec.replicas, which would pin every
	// deployment. `kubectl scale` does not read it (it sends a merge
	// patch), so it works on an autoscaled deployment, as below.
	err = e.cl.SubResource("scale").Get(context.Background(), e.getMD(t, "pinned"), &autoscalingv1.Scale{})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Logf("GET scale of an unpinned deployment = %v; the API server may have started to read an unset spec.replicas", err)
	}
	e.waitStatus(t, "pinned", 60*time.Second, "autoscaled back to zero", func(st v1alpha1.ModelDeploymentStatus) bool {
		return st.Replicas == 0 && st.DesiredReplicas == 0
	})
	waitFor(t, 30*time.Second, "route without the pin", func() (bool, string) {
		rt := gw.table.Lookup("pinned")
		return rt != nil && !rt.ScaledToZero && len(rt.Endpoints) == 0, fmt.Sprintf("%+v", rt)
	})
	if code, body := get(t, gw.url, "/v2/models/pinned/ready"); code != http.StatusOK {
		t.Errorf("ready at zero, autoscaled = %d %s; want 200", code, body)
	}
	// Metadata at zero comes from what the gateway saw (the infer above
	// went to a replica, not the metadata: none is known), and never
	// wakes the deployment.
	code, body := get(t, gw.url, "/v2/models/pinned")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "metadata will be available after its first request") {
		t.Errorf("metadata at zero without a signature = %d %s; want 503 that says when it will be known", code, body)
	}
	time.Sleep(time.Second)
	if pods := livePods(e.pods(t, "pinned")); len(pods) != 0 {
		t.Errorf("metadata at zero started %d pods; want none", len(pods))
	}
	if out := infer(t, gw.url, "pinned"); len(out) != 2 {
		t.Errorf("predictions after the wake-up: %v", out)
	}
	code, body = get(t, gw.url, "/v2/models/pinned")
	var meta struct {
		Name string `json:"name"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &meta) != nil || meta.Name != "pinned" {
		t.Errorf("metadata while warm = %d %s", code, body)
	}

	// kubectl scale --replicas=0 pins zero: the pod stops and requests
	// are refused.
	e.kubectl(t, "scale", "modeldeployment/pinned", "--replicas=0")
	e.waitStatus(t, "pinned", 60*time.Second, "pinned back to zero", func(st v1alpha1.ModelDeploymentStatus) bool {
		return st.Replicas == 0 && st.DesiredReplicas == 0
	})
	waitFor(t, 30*time.Second, "scaled-to-zero route again", func() (bool, string) {
		rt := gw.table.Lookup("pinned")
		return rt != nil && rt.ScaledToZero && len(rt.Endpoints) == 0, fmt.Sprintf("%+v", rt)
	})
	if code, body := post(t, gw.url, "/v2/models/pinned/infer"); code != http.StatusServiceUnavailable || !strings.Contains(body, "scaled_to_zero") {
		t.Errorf("infer after kubectl scale --replicas=0 = %d %s; want 503 scaled_to_zero", code, body)
	}
	// The metadata a replica answered while warm is still known at zero.
	if code, body := get(t, gw.url, "/v2/models/pinned"); code != http.StatusOK || !strings.Contains(body, `"name":"pinned"`) {
		t.Errorf("metadata pinned at zero after a warm answer = %d %s; want the cached metadata", code, body)
	}
}

// TestGatewayRoutesCarryVersionsAndPin checks what the in-cluster gateway
// reads from a ModelDeployment besides its endpoints: the pin at zero, the
// registry version new replicas serve (status.modelVersion) and, from the
// EndpointSlices' source, each replica's version from its entry in
// status.replicaStatuses.
func TestGatewayRoutesCarryVersionsAndPin(t *testing.T) {
	e := newEnv(t)
	md := e.echoMD("versioned")
	md.Spec.Replicas = new(int32)
	e.create(t, md)
	cur := e.getMD(t, "versioned")
	cur.Status.ModelVersion = "m:3"
	cur.Status.ReplicaStatuses = []serving.ReplicaStatus{{ID: "versioned-1", State: serving.ReplicaReady, StartedAt: time.Now().UTC(), ModelVersion: "m:3"}}
	if err := e.cl.Status().Update(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	gw := e.startGateway(t, discovery.FromEndpointSlices, "http://127.0.0.1:1")
	e.create(t, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "versioned-abc", Namespace: e.ns, Labels: map[string]string{
			operator.LabelDeployment:     "versioned",
			discoveryv1.LabelServiceName: "versioned",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"192.0.2.10"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "versioned-1"}},
		},
	})
	waitFor(t, 10*time.Second, "versioned, pinned route", func() (bool, string) {
		rt := gw.table.Lookup("versioned")
		if rt == nil || len(rt.Endpoints) != 1 {
			return false, fmt.Sprintf("%+v", rt)
		}
		return rt.ScaledToZero && rt.Version == "3" && rt.Model == "m:3" && rt.Endpoints[0].Version == "3",
			fmt.Sprintf("scaledToZero=%v version=%q model=%q endpoint version=%q", rt.ScaledToZero, rt.Version, rt.Model, rt.Endpoints[0].Version)
	})
	if code, body := post(t, gw.url, "/v2/models/versioned/versions/4/infer"); code != http.StatusNotFound || !strings.Contains(body, "serves version 3") {
		t.Errorf("/versions/4 = %d %s; want 404 naming version 3", code, body)
	}
}
