package apiclient_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

type fakeController struct{}

func (fakeController) Status(name string) serving.Status {
	return serving.Status{Replicas: 1, ReadyReplicas: 1, DesiredReplicas: 1}
}
func (fakeController) Notify(string) {}

// newServer serves the real admin API over a real store, and an inference
// endpoint that echoes the request for model "echo" and fails otherwise.
func newServer(t *testing.T) *apiclient.Client {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mux := http.NewServeMux()
	mux.Handle("/v1/", api.New(st, fakeController{}, nil))
	mux.HandleFunc("POST /v2/models/{name}/infer", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("name") {
		case "echo":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Write(b)
		case "teapot":
			http.Error(w, "short and stout", http.StatusTeapot)
		default:
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"input \"x\": shape [2] holds 2 elements but data has 3"}`)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return apiclient.New(srv.URL+"/", srv.Client())
}

func TestDeployments(t *testing.T) {
	ctx := context.Background()
	c := newServer(t)
	d := serving.Deployment{Name: "diabetes", Spec: serving.Spec{Model: "m.json"}}

	created, err := c.CreateDeployment(ctx, d)
	if err != nil {
		t.Fatalf("CreateDeployment: %v", err)
	}
	want := d.Spec
	want.Default()
	if diff := cmp.Diff(want, created.Spec); diff != "" {
		t.Errorf("created spec (-want +got):\n%s", diff)
	}
	if created.Status.ReadyReplicas != 1 {
		t.Errorf("created status = %+v, want the controller's", created.Status)
	}

	_, err = c.CreateDeployment(ctx, d)
	var apiErr *apiclient.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict || apiErr.Code != "deployment/exists" {
		t.Fatalf("second CreateDeployment error = %#v, want a 409 deployment/exists *Error", err)
	}
	if err.Error() != apiErr.Message || !strings.Contains(err.Error(), `"diabetes" already exists`) {
		t.Errorf("Error() = %q, want the server's message", err.Error())
	}

	d.Spec.Model = "v2.json"
	applied, createdNow, err := c.ApplyDeployment(ctx, d)
	if err != nil || createdNow || applied.Spec.Model != "v2.json" || applied.Generation != 2 {
		t.Errorf("ApplyDeployment(existing) = %+v, %v, %v; want replaced generation 2", applied, createdNow, err)
	}
	iris := serving.Deployment{Name: "iris", Spec: serving.Spec{Model: "iris.json"}}
	if _, createdNow, err := c.ApplyDeployment(ctx, iris); err != nil || !createdNow {
		t.Errorf("ApplyDeployment(new) created=%v err=%v, want created", createdNow, err)
	}

	patched, err := c.PatchDeployment(ctx, "diabetes", []byte(`{"spec":{"scaling":{"minReplicas":2,"maxReplicas":6}}}`))
	if err != nil {
		t.Fatalf("PatchDeployment: %v", err)
	}
	if patched.Spec.Scaling.MinReplicas != 2 || patched.Spec.Scaling.MaxReplicas != 6 {
		t.Errorf("patched scaling = %+v", patched.Spec.Scaling)
	}

	got, err := c.GetDeployment(ctx, "diabetes")
	if err != nil {
		t.Fatalf("GetDeployment: %v", err)
	}
	if diff := cmp.Diff(patched, got); diff != "" {
		t.Errorf("GetDeployment (-want +got):\n%s", diff)
	}

	list, err := c.ListDeployments(ctx)
	if err != nil {
		t.Fatalf("ListDeployments: %v", err)
	}
	var names []string
	for _, d := range list {
		names = append(names, d.Name)
	}
	if diff := cmp.Diff([]string{"diabetes", "iris"}, names); diff != "" {
		t.Errorf("listed (-want +got):\n%s", diff)
	}

	if err := c.DeleteDeployment(ctx, "diabetes"); err != nil {
		t.Fatalf("DeleteDeployment: %v", err)
	}
	_, err = c.GetDeployment(ctx, "diabetes")
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound || apiErr.Code != "deployment/not_found" {
		t.Errorf("GetDeployment after delete error = %#v, want 404 deployment/not_found", err)
	}
	if err := c.DeleteDeployment(ctx, "diabetes"); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Errorf("second DeleteDeployment error = %v, want 404", err)
	}
}

func TestValidationError(t *testing.T) {
	c := newServer(t)
	_, _, err := c.ApplyDeployment(context.Background(), serving.Deployment{Name: "x",
		Spec: serving.Spec{Model: "m.json", Scaling: serving.Scaling{MinReplicas: 5, MaxReplicas: 2}}})
	var apiErr *apiclient.Error
	if !errors.As(err, &apiErr) || apiErr.Code != "deployment/invalid" || apiErr.Status != 400 {
		t.Fatalf("error = %#v, want 400 deployment/invalid", err)
	}
	if !strings.Contains(apiErr.Message, "minReplicas (5) must not exceed maxReplicas (2)") {
		t.Errorf("message = %q", apiErr.Message)
	}
}

func TestInfer(t *testing.T) {
	ctx := context.Background()
	c := newServer(t)
	req := `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`
	got, err := c.Infer(ctx, "echo", []byte(req))
	if err != nil {
		t.Fatalf("Infer: %v", err)
	}
	if string(got) != req {
		t.Errorf("Infer = %s, want %s", got, req)
	}

	tests := []struct {
		model       string
		wantStatus  int
		wantMessage string
	}{
		{"bad", 400, `input "x": shape [2] holds 2 elements but data has 3`},
		{"teapot", 418, "ebb answered 418 I'm a teapot: short and stout"},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			_, err := c.Infer(ctx, tt.model, []byte(req))
			var apiErr *apiclient.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("Infer error = %v, want *apiclient.Error", err)
			}
			if diff := cmp.Diff(&apiclient.Error{Status: tt.wantStatus, Message: tt.wantMessage}, apiErr); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now

	_, err = apiclient.New(url, nil).ListDeployments(context.Background())
	want := "cannot reach ebb at " + url + ": is `ebb up` running? set --server or EBB_SERVER"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
	var apiErr *apiclient.Error
	if errors.As(err, &apiErr) {
		t.Errorf("connection failure reported as an API error: %#v", apiErr)
	}
}
