package apiclient_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// cannedLogs answers every replica's logs with its ID and the options.
type cannedLogs struct{}

func (cannedLogs) Logs(_ context.Context, deployment, id string, opts replica.LogOptions) (io.ReadCloser, error) {
	if id == "gone" {
		return nil, replica.ErrNotFound
	}
	s := deployment + "/" + id
	if opts.Follow {
		s += " follow"
	}
	return io.NopCloser(strings.NewReader(s + "\n")), nil
}

func TestObserveClient(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := registry.NewService(st, blobs{t.TempDir()}, registry.Options{})
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ev := serving.Event{Time: t0, Type: serving.EventNormal, Reason: serving.ReasonScaledUp, Message: "desired replicas 0 → 1: woken"}
	h := api.New(st, fakeController{}, nil)
	h.MountModels(svc)
	h.MountEvents(api.EventsFunc(func(context.Context, string) ([]serving.Event, error) { return []serving.Event{ev}, nil }))
	h.MountLogs(cannedLogs{})
	h.MountVersion(api.VersionInfo{Version: "v1.0.0", Home: api.HomeUp})
	var mu sync.Mutex
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c := apiclient.New(srv.URL, srv.Client()).WithToken("t0k3n")
	if c.Server() != srv.URL {
		t.Errorf("Server() = %q", c.Server())
	}

	if _, err := c.CreateDeployment(ctx, serving.Deployment{Name: "web", Spec: serving.Spec{Model: "m.json"}}); err != nil {
		t.Fatal(err)
	}
	evs, err := c.Events(ctx, "web")
	if err != nil || !cmp.Equal(evs, []serving.Event{ev}) {
		t.Errorf("Events = %+v, %v", evs, err)
	}
	if _, err := c.Events(ctx, "nope"); apiCode(err) != "deployment/not_found" {
		t.Errorf("Events(nope) = %v", err)
	}
	v, err := c.Version(ctx)
	if err != nil || v != (api.VersionInfo{Version: "v1.0.0", Home: "up"}) {
		t.Errorf("Version = %+v, %v", v, err)
	}

	rc, err := c.Logs(ctx, "web", apiclient.LogOptions{Replica: "web-1", Follow: true, Tail: -1})
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "web/web-1 follow\n" {
		t.Errorf("Logs read %q", b)
	}
	if _, err := c.Logs(ctx, "web", apiclient.LogOptions{Replica: "gone"}); apiCode(err) != "replica/not_found" {
		t.Errorf("Logs of a gone replica = %v", err)
	}

	file := filepath.Join(t.TempDir(), "model.json")
	os.WriteFile(file, []byte(`{"learner":{}}`), 0o644)
	for range 2 {
		if _, err := c.PushVersion(ctx, "diabetes", api.PushMetadata{Engine: "trees"}, file); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.SetAlias(ctx, "diabetes", "champion", 2, nil, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteVersion(ctx, "diabetes", 2); apiCode(err) != "model/in_use" {
		t.Errorf("DeleteVersion of an aliased version = %v, want model/in_use", err)
	}
	got, err := c.DeleteVersion(ctx, "diabetes", 1)
	if err != nil || got.State != registry.StatePurged {
		t.Errorf("DeleteVersion = %+v, %v", got, err)
	}
	if err := c.DeleteModel(ctx, "diabetes"); apiCode(err) != "model/in_use" {
		t.Errorf("DeleteModel of a model with an alias = %v, want model/in_use", err)
	}

	mu.Lock()
	defer mu.Unlock()
	for i, a := range auth {
		if a != "Bearer t0k3n" {
			t.Errorf("request %d sent Authorization %q", i, a)
		}
	}
}

func apiCode(err error) string {
	if ae, ok := errors.AsType[*apiclient.Error](err); ok {
		return ae.Code
	}
	return ""
}
