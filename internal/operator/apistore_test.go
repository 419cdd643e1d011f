package operator_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The admin API's store in a cluster is the namespace's ModelDeployments:
// what the API writes, kubectl reads, and the other way round, with the
// API's errors and generations.
func TestAPIStoreIsModelDeployments(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	st := operator.NewAPIStore(e.cl, e.cl, e.ns)

	d := serving.Deployment{Name: "echo", Spec: serving.Spec{Model: "x", Engine: "echo", Scaling: scaling()}}
	created, err := st.CreateDeployment(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if created.Generation != 1 || created.CreatedAt.IsZero() || created.Spec.Engine != "echo" {
		t.Errorf("created = %+v, want generation 1, a creation time and the spec", created)
	}
	if _, err := st.CreateDeployment(ctx, d); !errors.Is(err, store.ErrExists) {
		t.Errorf("second create: %v, want ErrExists", err)
	}
	var md v1alpha1.ModelDeployment
	if err := e.cl.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "echo"}, &md); err != nil || md.Spec.Engine != "echo" {
		t.Fatalf("the API's deployment is not a ModelDeployment: %v %+v", err, md.Spec)
	}

	// kubectl's change is the API's view, and the API's change is kubectl's.
	e.kubectl(t, "patch", "md", "echo", "--type=merge", "-p", `{"spec":{"scaling":{"maxReplicas":7}}}`)
	got, err := st.GetDeployment(ctx, "echo")
	if err != nil || got.Spec.Scaling.MaxReplicas != 7 || got.Generation != 2 {
		t.Fatalf("after kubectl patch: %+v %v, want maxReplicas 7 at generation 2", got.Spec.Scaling, err)
	}
	updated, err := st.UpdateDeployment(ctx, "echo", func(d *serving.Deployment) error {
		d.Spec.Replicas = new(int32)
		return nil
	})
	if err != nil || updated.Generation != 3 {
		t.Fatalf("update: %+v %v", updated, err)
	}
	if out := e.kubectl(t, "get", "md", "echo", "-o", "jsonpath={.spec.replicas}"); out != "0" {
		t.Errorf("kubectl sees spec.replicas %q after the API pinned it to 0", out)
	}
	refused := errors.New("refused by fn")
	if _, err := st.UpdateDeployment(ctx, "echo", func(*serving.Deployment) error { return refused }); err != refused {
		t.Errorf("update whose fn fails: %v, want fn's error unchanged", err)
	}
	list, err := st.ListDeployments(ctx)
	if err != nil || len(list) != 1 {
		t.Errorf("list: %d deployments, %v", len(list), err)
	}

	// Through the API handler: same JSON and error codes as ebb up.
	srv := httptest.NewServer(api.New(st, nopController{}, nil))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/deployments", "application/json", strings.NewReader(`{"name":"echo","spec":{"model":"x","engine":"echo"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("POST of an existing deployment: %d, want 409", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/v1/deployments/echo", nil)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE: %d, want 204", resp.StatusCode)
	}
	if _, err := st.GetDeployment(ctx, "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get of a missing deployment: %v, want ErrNotFound", err)
	}

	// An unreachable API server is a store outage, named.
	down := operator.NewAPIStore(unreachable{}, unreachable{}, e.ns)
	if _, err := down.ListDeployments(ctx); !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "Kubernetes API server") {
		t.Errorf("list with the API server down: %v, want ErrUnavailable naming it", err)
	}
}

type nopController struct{}

func (nopController) Status(string) serving.Status { return serving.Status{} }
func (nopController) Notify(string)                {}

// unreachable is a client whose every call fails as a dead API server's.
type unreachable struct{ client.Client }

var errDial = errors.New(`Get "https://127.0.0.1:1/apis": dial tcp 127.0.0.1:1: connect: connection refused`)

func (unreachable) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return errDial
}
func (unreachable) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errDial
}
