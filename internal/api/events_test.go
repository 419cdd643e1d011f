package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// newEnvWith is newEnv with routes mounted on the handler.
func newEnvWith(t *testing.T, mount func(h *api.Handler, st *sqlite.Store)) *env {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	ctl := &fakeController{statuses: map[string]serving.Status{}}
	h := api.New(st, ctl, nil)
	mount(h, st)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{st: st, ctl: ctl, srv: srv}
}

func TestEvents(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	scaled := serving.Event{Time: t0, Type: serving.EventNormal, Reason: serving.ReasonScaledUp, Message: "desired replicas 0 → 1: 3 requests waiting"}
	failed := serving.Event{Time: t0.Add(time.Second), Type: serving.EventWarning, Reason: serving.ReasonReplicaFailed, Message: "model does not load", Count: 2}
	var asked []string
	e := newEnvWith(t, func(h *api.Handler, _ *sqlite.Store) {
		h.MountEvents(api.EventsFunc(func(_ context.Context, name string) ([]serving.Event, error) {
			asked = append(asked, name)
			if name == "diabetes" {
				return []serving.Event{failed, scaled}, nil // any order
			}
			return nil, nil
		}))
	})
	for _, doc := range []string{`{"name":"diabetes","spec":{"model":"m.json"}}`, `{"name":"iris","spec":{"model":"m.json"}}`} {
		if code, _, body := e.do(t, "POST", "/v1/deployments", "application/json", doc); code != http.StatusCreated {
			t.Fatalf("create: %d %s", code, body)
		}
	}

	code, hdr, body := e.do(t, "GET", "/v1/deployments/diabetes/events", "", "")
	if code != http.StatusOK || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("GET events = %d %s %s", code, hdr.Get("Content-Type"), body)
	}
	if diff := cmp.Diff(api.EventList{Items: []serving.Event{scaled, failed}}, decode[api.EventList](t, body)); diff != "" {
		t.Errorf("events, oldest first (-want +got):\n%s", diff)
	}

	// None is an empty list, not null.
	if code, _, body := e.do(t, "GET", "/v1/deployments/iris/events", "", ""); code != http.StatusOK || string(body) != "{\n  \"items\": []\n}\n" {
		t.Errorf("events of iris = %d %q, want 200 and an empty list", code, body)
	}

	code, _, body = e.do(t, "GET", "/v1/deployments/nope/events", "", "")
	wantError(t, "events of a missing deployment", code, body, http.StatusNotFound, "deployment/not_found", "ebb get deployments")
	code, _, body = e.do(t, "POST", "/v1/deployments/diabetes/events", "application/json", "{}")
	wantError(t, "POST events", code, body, http.StatusMethodNotAllowed, "request/method_not_allowed", "GET, HEAD")
	if diff := cmp.Diff([]string{"diabetes", "iris"}, asked); diff != "" {
		t.Errorf("Events asked for (-want +got):\n%s", diff)
	}
}

func TestVersion(t *testing.T) {
	e := newEnvWith(t, func(h *api.Handler, _ *sqlite.Store) {
		h.MountVersion(api.VersionInfo{Version: "v1.2.3", Home: api.HomeCluster})
	})
	code, _, body := e.do(t, "GET", "/v1/version", "", "")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/version = %d %s", code, body)
	}
	if got := decode[map[string]string](t, body); !cmp.Equal(got, map[string]string{"version": "v1.2.3", "home": "cluster"}) {
		t.Errorf("version body = %v", got)
	}
	code, _, body = e.do(t, "DELETE", "/v1/version", "", "")
	wantError(t, "DELETE /v1/version", code, body, http.StatusMethodNotAllowed, "request/method_not_allowed", "GET")
}
