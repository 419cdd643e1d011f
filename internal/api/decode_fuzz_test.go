package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// FuzzDecodeDeployment decodes a deployment body as POST and PUT do. For
// any bytes: no panic; a refusal is a 400 request/malformed or
// deployment/invalid error; and a body that decodes and validates encodes,
// decodes and validates again to the same deployment.
func FuzzDecodeDeployment(f *testing.F) {
	f.Add([]byte(`{"name":"diabetes","spec":{"model":"examples/diabetes/model.json","engine":"trees","scaling":{"maxReplicas":4,"scaleToZeroAfter":"30s"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := decodeDeployment(body)
		if err != nil {
			checkBadRequest(t, err)
			return
		}
		d := serving.Deployment{Name: b.Name, Spec: b.Spec}
		if err := validate(&d); err != nil {
			checkBadRequest(t, err)
			return
		}
		first, err := json.Marshal(deploymentBody{Name: d.Name, Spec: d.Spec})
		if err != nil {
			t.Fatalf("encoding a valid deployment: %v", err)
		}
		b2, err := decodeDeployment(first)
		if err != nil {
			t.Fatalf("decoding the encoding %s of a valid deployment: %v", first, err)
		}
		d2 := serving.Deployment{Name: b2.Name, Spec: b2.Spec}
		if err := validate(&d2); err != nil {
			t.Fatalf("the encoding %s of a valid deployment does not validate: %v", first, err)
		}
		second, err := json.Marshal(deploymentBody{Name: d2.Name, Spec: d2.Spec})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, second) {
			t.Fatalf("a deployment changed on a round trip:\n first %s\nsecond %s", first, second)
		}
	})
}

// FuzzPatchDeployment sends a JSON merge patch through the real handler to
// a stored deployment. For any patch: no panic; the answer is 200 or a 400
// with an error body, never a 500; a refused patch changes nothing; an
// accepted one leaves a valid deployment of the same name, which the
// response shows; and applying the same patch again changes nothing more
// (merge patches are idempotent).
func FuzzPatchDeployment(f *testing.F) {
	f.Add([]byte(`{"spec":{"scaling":{"maxReplicas":8,"minReplicas":null}}}`))
	f.Fuzz(func(t *testing.T, patch []byte) {
		st := &memStore{}
		h := New(st, nopController{}, nil)
		seed := `{"name":"diabetes","spec":{"model":"examples/diabetes/model.json","engine":"trees","env":{"A":"1"},"batching":{"maxBatchSize":4,"maxQueueDelay":"2ms"},"scaling":{"maxReplicas":4,"scaleToZeroAfter":"30s"}}}`
		if code, body := serve(h, http.MethodPost, seed); code != http.StatusCreated {
			t.Fatalf("creating the deployment: %d %s", code, body)
		}
		before := st.snapshot(t)

		code, body := serve(h, http.MethodPatch, string(patch))
		after := st.snapshot(t)
		switch code {
		case http.StatusOK:
		case http.StatusBadRequest:
			var e ErrorBody
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("400 with body %s: want an error code and message", body)
			}
			if after != before {
				t.Fatalf("a refused patch changed the deployment:\nbefore %s\n after %s", before, after)
			}
			return
		default:
			t.Fatalf("PATCH answered %d %s; want 200 or 400", code, body)
		}

		var got serving.Deployment
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("200 with a body that is not a deployment: %v\n%s", err, body)
		}
		stored := st.get()
		if got.Name != "diabetes" || stored.Name != "diabetes" {
			t.Fatalf("patch renamed the deployment to %q (stored %q)", got.Name, stored.Name)
		}
		if err := stored.Validate(); err != nil {
			t.Fatalf("patch stored an invalid deployment: %v", err)
		}
		if g, s := mustMarshal(t, got.Spec), mustMarshal(t, stored.Spec); g != s {
			t.Fatalf("the response shows spec %s but the store holds %s", g, s)
		}

		if code, body := serve(h, http.MethodPatch, string(patch)); code != http.StatusOK {
			t.Fatalf("the same patch again answered %d %s", code, body)
		}
		if again := st.snapshot(t); again != after {
			t.Fatalf("the same patch applied twice changed the deployment again:\n once %s\ntwice %s", after, again)
		}
	})
}

func checkBadRequest(t *testing.T, err error) {
	t.Helper()
	ae, ok := errors.AsType[*apiError](err)
	if !ok || ae.status != http.StatusBadRequest || (ae.code != codeMalformed && ae.code != codeInvalid) || ae.message == "" {
		t.Fatalf("error %#v (%v): want a 400 request/malformed or deployment/invalid apiError", err, err)
	}
}

func serve(h http.Handler, method, body string) (int, []byte) {
	path := "/v1/deployments"
	if method != http.MethodPost {
		path += "/diabetes"
	}
	req := httptest.NewRequest(method, path, bytes.NewReader([]byte(body)))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// memStore is a Store of at most one deployment, kept in memory: enough
// for the handler's one-deployment paths, and fast enough to fuzz.
type memStore struct {
	mu sync.Mutex
	d  *serving.Deployment
}

func (s *memStore) get() serving.Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d serving.Deployment
	if s.d != nil {
		s.d.DeepCopyInto(&d)
	}
	return d
}

// snapshot is the stored name and spec, as JSON.
func (s *memStore) snapshot(t *testing.T) string {
	d := s.get()
	return mustMarshal(t, deploymentBody{Name: d.Name, Spec: d.Spec})
}

func (s *memStore) CreateDeployment(ctx context.Context, d serving.Deployment) (serving.Deployment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.d != nil {
		return serving.Deployment{}, store.ErrExists
	}
	d.Generation = 1
	s.d = &d
	return d, nil
}

func (s *memStore) GetDeployment(ctx context.Context, name string) (serving.Deployment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.d == nil || s.d.Name != name {
		return serving.Deployment{}, store.ErrNotFound
	}
	return *s.d, nil
}

func (s *memStore) ListDeployments(ctx context.Context) ([]serving.Deployment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.d == nil {
		return nil, nil
	}
	return []serving.Deployment{*s.d}, nil
}

func (s *memStore) UpdateDeployment(ctx context.Context, name string, fn func(*serving.Deployment) error) (serving.Deployment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.d == nil || s.d.Name != name {
		return serving.Deployment{}, store.ErrNotFound
	}
	var d serving.Deployment
	s.d.DeepCopyInto(&d)
	if err := fn(&d); err != nil {
		return serving.Deployment{}, err
	}
	d.Generation++
	s.d = &d
	return d, nil
}

func (s *memStore) DeleteDeployment(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.d == nil || s.d.Name != name {
		return store.ErrNotFound
	}
	s.d = nil
	return nil
}

type nopController struct{}

func (nopController) Status(string) serving.Status { return serving.Status{} }
func (nopController) Notify(string)                {}
