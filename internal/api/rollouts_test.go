package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// failingRollouts answers every call with err, to check how the API maps
// the rollout manager's errors (the manager itself is tested in package
// rollout, and through the gateway in test/e2e).
type failingRollouts struct{ err error }

func (f failingRollouts) Start(context.Context, string, rollout.Request) (rollout.Status, error) {
	return rollout.Status{}, f.err
}
func (f failingRollouts) Get(context.Context, string) (rollout.Status, error) {
	return rollout.Status{}, f.err
}
func (f failingRollouts) Pause(context.Context, string, string) (rollout.Status, error) {
	return rollout.Status{}, f.err
}
func (f failingRollouts) Resume(context.Context, string) (rollout.Status, error) {
	return rollout.Status{}, f.err
}
func (f failingRollouts) Abort(context.Context, string, string) (rollout.Status, error) {
	return rollout.Status{}, f.err
}
func (f failingRollouts) Promote(context.Context, string, string) (rollout.Status, error) {
	return rollout.Status{}, f.err
}
func (f failingRollouts) Undo(context.Context, string, rollout.UndoRequest, string) (rollout.UndoResult, error) {
	return rollout.UndoResult{}, f.err
}

func TestRolloutErrors(t *testing.T) {
	tests := []struct {
		err      error
		method   string
		path     string
		body     string
		wantCode int
		wantErr  string
	}{
		{fmt.Errorf("%w: steps must ascend", rollout.ErrInvalid), "POST", "/v1/deployments/m/rollout", `{"to":"/models/b.json"}`, 400, "rollout/invalid"},
		{fmt.Errorf("%w: one is running", rollout.ErrActive), "POST", "/v1/deployments/m/rollout", `{"to":"/models/b.json"}`, 409, "rollout/active"},
		{fmt.Errorf("%w: none yet", rollout.ErrNone), "GET", "/v1/deployments/m/rollout", "", 404, "rollout/not_found"},
		{fmt.Errorf("cannot pause: %w", traffic.ErrRolloutOver), "POST", "/v1/deployments/m/rollout/pause", "{}", 409, "rollout/over"},
		{nil, "POST", "/v1/deployments/m/rollout/explode", "{}", 404, "request/not_found"},
		{nil, "POST", "/v1/deployments/m/rollout", `{"to":"/models/b.json","stepz":[1]}`, 400, "request/malformed"},
		{nil, "POST", "/v1/deployments/nope/rollout", `{"to":"/models/b.json"}`, 404, "deployment/not_found"},
		{nil, "DELETE", "/v1/deployments/m/rollout", "", 405, "request/method_not_allowed"},
		{fmt.Errorf("%w: abort it first", rollout.ErrActive), "POST", "/v1/deployments/m/rollout/undo", "", 409, "rollout/active"},
		{fmt.Errorf("%w: nothing to undo", rollout.ErrInvalid), "POST", "/v1/deployments/m/rollout/undo", `{"toRevision":3}`, 400, "rollout/invalid"},
		{fmt.Errorf("alias moved meanwhile: %w", store.ErrConflict), "POST", "/v1/deployments/m/rollout/undo", "{}", 409, "rollout/conflict"},
		{&registry.InvalidError{Message: "m:1 was retired"}, "POST", "/v1/deployments/m/rollout/undo", "{}", 400, "rollout/invalid"},
		{fmt.Errorf("get: %w", store.ErrNotFound), "POST", "/v1/deployments/m/rollout/undo", "{}", 404, "deployment/not_found"},
		{nil, "POST", "/v1/deployments/m/rollout/undo", `{"revision":3}`, 400, "request/malformed"},
		{nil, "GET", "/v1/deployments/m/rollout/undo", "", 405, "request/method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+fmt.Sprint(tt.err), func(t *testing.T) {
			_, h := rolloutAPI(t)
			h.MountRollouts(failingRollouts{err: cmpErr(tt.err)})
			srv := httptest.NewServer(h)
			defer srv.Close()
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, body)
			req.Header.Set("Content-Type", "application/json")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantCode || !strings.Contains(string(b), `"`+tt.wantErr+`"`) {
				t.Fatalf("= %d %s; want %d %s", resp.StatusCode, b, tt.wantCode, tt.wantErr)
			}
		})
	}
}

// cmpErr is err, or a generic failure where the route must fail before
// the manager is asked.
func cmpErr(err error) error {
	if err == nil {
		return errors.New("the manager must not be called")
	}
	return err
}

// undoRollouts answers Undo with what it was asked, after the API's check
// of the version it goes back to.
type undoRollouts struct {
	failingRollouts
	version string
}

func (u undoRollouts) Undo(ctx context.Context, name string, req rollout.UndoRequest, by string) (rollout.UndoResult, error) {
	if req.Check == nil {
		return rollout.UndoResult{}, errors.New("the API set no check")
	}
	if err := req.Check(ctx, u.version); err != nil {
		return rollout.UndoResult{}, err
	}
	return rollout.UndoResult{Deployment: name, To: u.version, Revision: req.ToRevision, Model: by}, nil
}

func TestRolloutUndoRoute(t *testing.T) {
	tests := []struct {
		name     string
		version  string // what the manager would go back to
		body     string
		wantCode int
		want     string
	}{
		{"no body", "m:1", "", 200, `{"deployment":"m","to":"m:1","revision":0,"model":"a user","aliasMoved":false}`},
		{"revision", "m:1", `{"toRevision":2}`, 200, `"revision":2`},
		// The API's checks of a deployment write apply to the version.
		{"version not in the registry", "m:9", "{}", 400, `"rollout/invalid","message":"cannot undo to m:9: invalid deployment: spec.model: m:9 is not in the registry`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, h := rolloutAPI(t)
			if _, err := st.CreateModel(context.Background(), registry.Model{Name: "m"}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.CreateVersion(context.Background(), registry.Version{Model: "m", ArtifactURI: "file:///a", SHA256: "00", Engine: "trees"}); err != nil {
				t.Fatal(err)
			}
			h.MountModels(registry.NewService(st, nil, registry.Options{}))
			h.MountRollouts(undoRollouts{version: tt.version})
			srv := httptest.NewServer(h)
			defer srv.Close()
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/deployments/m/rollout/undo", body)
			req.Header.Set("Content-Type", "application/json")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var compact bytes.Buffer
			if err := json.Compact(&compact, b); err != nil {
				t.Fatalf("%d %s: %v", resp.StatusCode, b, err)
			}
			if resp.StatusCode != tt.wantCode || !strings.Contains(compact.String(), tt.want) {
				t.Fatalf("= %d %s; want %d with %s", resp.StatusCode, compact.String(), tt.wantCode, tt.want)
			}
		})
	}
}

// rolloutAPI is an admin API over a fresh store holding deployment m.
func rolloutAPI(t *testing.T) (*sqlstore.Store, *api.Handler) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d := serving.Deployment{Name: "m", Spec: serving.Spec{Model: "/models/a.json", Engine: "trees"}}
	d.Spec.Default()
	if _, err := st.CreateDeployment(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	return st, api.New(st, &fakeController{statuses: map[string]serving.Status{}}, nil)
}
