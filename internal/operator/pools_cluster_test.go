package operator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/serving"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestModelPools runs a multi-model pool as a ModelPool: its replica pods
// are labelled with the pool (never with a deployment), owned by the
// ModelPool and shaped by its template; a pooled ModelDeployment woken by
// a gateway is loaded into one, its status says where with the replica's
// endpoint (which the gateways route by) and the replica answers for it;
// the ModelPool's status counts it; a ModelPool kubectl wrote with an
// invalid spec starts nothing and says why; deleting a ModelPool stops
// its pods.
func TestModelPools(t *testing.T) {
	e := newEnv(t)
	e.c.CreateNodes(t, 1, kubetest.NodeSpec{Prefix: "pools-" + e.ns})
	mp := &v1alpha1.ModelPool{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: e.ns}}
	mp.Spec.Engine, mp.Spec.MemoryBudget, mp.Spec.ShardSize = "trees", "64MiB", 1
	mp.Spec.MinReplicas, mp.Spec.MaxReplicas = 1, 2
	mp.Spec.Template.Labels = map[string]string{"team": "ml"}
	e.create(t, mp)
	bad := &v1alpha1.ModelPool{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: e.ns}}
	bad.Spec.Engine, bad.Spec.MemoryBudget = "echo", "64MiB"
	e.create(t, bad)
	op := e.startOperator(t)
	srv := httptest.NewServer(op.op.Handler())
	defer srv.Close()

	poolPods := func(pool string) []corev1.Pod {
		var list corev1.PodList
		if err := e.cl.List(context.Background(), &list, client.InNamespace(e.ns), client.MatchingLabels{operator.LabelPool: pool}); err != nil {
			t.Fatal(err)
		}
		return livePods(list.Items)
	}
	var pod corev1.Pod
	waitFor(t, 60*time.Second, "the pool's first pod (minReplicas 1)", func() (bool, string) {
		ps := poolPods("p")
		if len(ps) == 0 {
			return false, "no pod"
		}
		pod = ps[0]
		return true, ""
	})
	if _, ok := pod.Labels[operator.LabelDeployment]; ok || pod.Labels[operator.LabelPoolSlot] != "0" || pod.Labels["team"] != "ml" {
		t.Errorf("pool pod labels %v: want %s=p, %s=0, team=ml and no %s", pod.Labels, operator.LabelPool, operator.LabelPoolSlot, operator.LabelDeployment)
	}
	if ref := metav1.GetControllerOf(&pod); ref == nil || ref.Kind != "ModelPool" || ref.Name != "p" {
		t.Errorf("pool pod owner %+v, want the ModelPool p", ref)
	}
	if !strings.HasPrefix(pod.Name, "pool-p-") {
		t.Errorf("pool pod name %q, want pool-p-...", pod.Name)
	}
	getPool := func(name string) *v1alpha1.ModelPool {
		var got v1alpha1.ModelPool
		if err := e.cl.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: name}, &got); err != nil {
			t.Fatal(err)
		}
		return &got
	}
	waitFor(t, 60*time.Second, "ModelPool p ready", func() (bool, string) {
		st := getPool("p").Status
		return st.ReadyReplicas == 1 && st.ObservedGeneration == 1 && len(st.ReplicaStatuses) == 1, fmt.Sprintf("%+v", st)
	})
	waitFor(t, 30*time.Second, "ModelPool bad says why it is invalid", func() (bool, string) {
		st := getPool("bad").Status
		return strings.Contains(st.Failure, "invalid spec") && strings.Contains(st.Failure, "spec.engine"), fmt.Sprintf("%+v", st)
	})
	if n := len(poolPods("bad")); n != 0 {
		t.Errorf("an invalid ModelPool has %d pods", n)
	}

	// A pooled model: woken as a gateway wakes it, then loaded.
	model, _ := filepath.Abs("../../examples/diabetes/model.json")
	md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: e.ns}}
	md.Spec.Model, md.Spec.Engine, md.Spec.Pool = model, "trees", &serving.PoolRef{Name: "p"}
	e.create(t, md)
	e.waitStatus(t, "m", 30*time.Second, "seen by the loop", func(st v1alpha1.ModelDeploymentStatus) bool { return st.ObservedGeneration == 1 })
	resp, err := http.Post(srv.URL+operator.WakePath+"m", "application/json", strings.NewReader(`{"gateway":"test-gw","inFlight":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := e.waitStatus(t, "m", 60*time.Second, "loaded in the pool", func(st v1alpha1.ModelDeploymentStatus) bool {
		return st.Pool != nil && len(st.Pool.Replicas) == 1 && st.ReadyReplicas == 1
	})
	if got.Status.Pool.Bytes <= 0 || got.Status.Pool.Pool != "p" {
		t.Errorf("status.pool %+v: want pool p and a measured size", got.Status.Pool)
	}
	var endpoint string
	for _, rs := range got.Status.ReplicaStatuses {
		if rs.State == serving.ReplicaReady {
			endpoint = rs.Endpoint
		}
	}
	if !strings.HasPrefix(endpoint, "http://127.") {
		t.Fatalf("ready replica endpoint %q in the status, want the pool pod's loopback address", endpoint)
	}
	checkDiabetes(t, endpoint+"/v2/models/m/infer")
	waitFor(t, 30*time.Second, "ModelPool p counts the model loaded", func() (bool, string) {
		st := getPool("p").Status
		return st.Models == 1 && st.Loaded == 1 && len(st.ReplicaStatuses) == 1 && st.ReplicaStatuses[0].UsedBytes > 0, fmt.Sprintf("%+v", st)
	})

	// Deleting the ModelPool stops its pods; the model says its pool is gone.
	if err := e.cl.Delete(context.Background(), getPool("p")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the pool's pods gone", func() (bool, string) {
		n := len(poolPods("p"))
		return n == 0, fmt.Sprintf("%d pods", n)
	})
	e.waitStatus(t, "m", 30*time.Second, "failing: its pool is gone", func(st v1alpha1.ModelDeploymentStatus) bool {
		return strings.Contains(operator.FailureOf(&v1alpha1.ModelDeployment{Status: st}), "pool p does not exist")
	})
}

// checkDiabetes sends the first row of the diabetes golden file to url and
// checks the prediction.
func checkDiabetes(t *testing.T, url string) {
	t.Helper()
	b, err := os.ReadFile("../../examples/diabetes/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Rows        [][]float64 `json:"inputs"`
		Predictions []float64   `json:"predictions"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	row, _ := json.Marshal(g.Rows[0])
	body, _ := json.Marshal(oip.InferRequest{Inputs: []oip.RequestInput{{Name: "input", Shape: []int64{1, int64(len(g.Rows[0]))}, Datatype: "FP64", Data: row}}})
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out oip.InferResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || len(out.Outputs) == 0 {
		t.Fatalf("infer %s: %d %v", url, resp.StatusCode, err)
	}
	data, _ := out.Outputs[0].Data.([]any)
	if len(data) == 0 {
		t.Fatalf("infer %s: no output data: %+v", url, out.Outputs[0])
	}
	if p, _ := data[0].(float64); math.Abs(p-g.Predictions[0]) > 1e-3 {
		t.Errorf("prediction %v, want %v", p, g.Predictions[0])
	}
}
