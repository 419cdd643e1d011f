package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/reqstats"
	"github.com/ebb-ml/ebb/internal/serving"
)

func createNamed(t *testing.T, e *env, names ...string) {
	t.Helper()
	for _, n := range names {
		body := fmt.Sprintf(`{"name":%q,"spec":{"model":"file:///m/%s.json","engine":"trees"}}`, n, n)
		if code, _, b := e.do(t, http.MethodPost, "/v1/deployments", "application/json", body); code != http.StatusCreated {
			t.Fatalf("create %s: %d %s", n, code, b)
		}
	}
}

func pageNames(p api.Page) []string {
	var out []string
	for _, d := range p.Items {
		out = append(out, d.Name)
	}
	return out
}

func TestListPages(t *testing.T) {
	e := newEnv(t)
	createNamed(t, e, "echo", "alpha", "fraud-eu", "delta", "fraud-us", "bravo", "charlie")
	e.ctl.statuses["alpha"] = serving.Status{Replicas: 2}

	// Walk the pages of 3 by name.
	var got [][]string
	path := "/v1/deployments?limit=3"
	for i := 0; path != ""; i++ {
		code, _, b := e.do(t, http.MethodGet, path, "", "")
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, b)
		}
		p := decode[api.Page](t, b)
		if p.Total == nil || *p.Total != 7 {
			t.Errorf("page %d: total %v, want 7", i, p.Total)
		}
		if i == 0 && p.Items[0].Status.Replicas != 2 {
			t.Errorf("page 0: alpha has status %+v, want the controller's", p.Items[0].Status)
		}
		got = append(got, pageNames(p))
		path = ""
		if p.Continue != "" {
			path = "/v1/deployments?limit=3&continue=" + url.QueryEscape(p.Continue)
		}
	}
	want := [][]string{{"alpha", "bravo", "charlie"}, {"delta", "echo", "fraud-eu"}, {"fraud-us"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pages (-want +got):\n%s", diff)
	}

	// Search by name or model, any case.
	_, _, b := e.do(t, http.MethodGet, "/v1/deployments?search=FRAUD", "", "")
	if p := decode[api.Page](t, b); !cmp.Equal(pageNames(p), []string{"fraud-eu", "fraud-us"}) || *p.Total != 2 {
		t.Errorf("search=FRAUD: %v total %v, want fraud-eu, fraud-us", pageNames(p), *p.Total)
	}
	_, _, b = e.do(t, http.MethodGet, "/v1/deployments?search=m/delta.json", "", "")
	if p := decode[api.Page](t, b); !cmp.Equal(pageNames(p), []string{"delta"}) {
		t.Errorf("search by model: %v, want delta", pageNames(p))
	}

	// Without parameters: the plain list, every deployment and no total.
	_, _, b = e.do(t, http.MethodGet, "/v1/deployments", "", "")
	if p := decode[api.Page](t, b); len(p.Items) != 7 || p.Total != nil || p.Continue != "" {
		t.Errorf("plain list: %d items, total %v, continue %q; want 7, none, none", len(p.Items), p.Total, p.Continue)
	}

	for _, bad := range []string{"limit=0", "limit=x", "limit=1001", "continue=%40%40", "continue=!!"} {
		code, _, b := e.do(t, http.MethodGet, "/v1/deployments?"+bad, "", "")
		if code != http.StatusBadRequest {
			t.Errorf("?%s: %d %s, want 400", bad, code, b)
		}
	}
}

// memStore is an api.Store over a slice, for a list of 10,000
// deployments without creating each through SQLite.
type memStore struct {
	api.Store
	ds []serving.Deployment
}

func (m *memStore) ListDeployments(context.Context) ([]serving.Deployment, error) { return m.ds, nil }

func TestListPagesAtTenThousand(t *testing.T) {
	st := &memStore{}
	for i := range 10000 {
		st.ds = append(st.ds, serving.Deployment{Name: fmt.Sprintf("model-%05d", 9999-i), Spec: serving.Spec{Model: "m"}})
	}
	srv := httptest.NewServer(api.New(st, &fakeController{}, nil))
	defer srv.Close()
	get := func(q string) api.Page {
		resp, err := http.Get(srv.URL + "/v1/deployments?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p api.Page
		if err := decodeBody(resp, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := get("limit=50&search=model-0420")
	if len(p.Items) != 10 || *p.Total != 10 || p.Items[0].Name != "model-04200" {
		t.Errorf("search model-0420: %d items from %q, total %d; want 10 from model-04200", len(p.Items), p.Items[0].Name, *p.Total)
	}
	seen := 0
	q := "limit=1000"
	for q != "" {
		p := get(q)
		seen += len(p.Items)
		q = ""
		if p.Continue != "" {
			q = "limit=1000&continue=" + url.QueryEscape(p.Continue)
		}
	}
	if seen != 10000 {
		t.Errorf("pages of 1000 listed %d deployments, want 10000", seen)
	}
}

// fakeStats serves canned samples.
type fakeStats map[string][]reqstats.Sample

func (f fakeStats) Series(name string) []reqstats.Sample { return f[name] }
func (f fakeStats) Interval() time.Duration              { return 5 * time.Second }

func TestStats(t *testing.T) {
	st := newEnv(t)
	createNamed(t, st, "a")
	h := api.New(st.st, st.ctl, nil)
	p50 := 0.012
	h.MountStats(fakeStats{"a": {{Time: time.Unix(10, 0).UTC(), Requests: 5, Rate: 1, P50: &p50}}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/deployments/a/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got api.StatsList
	if err := decodeBody(resp, &got); err != nil {
		t.Fatal(err)
	}
	want := api.StatsList{IntervalSeconds: 5, Items: []reqstats.Sample{{Time: time.Unix(10, 0).UTC(), Requests: 5, Rate: 1, P50: &p50}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	resp2, err := http.Get(srv.URL + "/v1/deployments/nope/stats")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusNotFound {
		t.Errorf("stats of a deployment that does not exist: %d, want 404", resp2.StatusCode)
	}
}

func decodeBody(resp *http.Response, v any) error {
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// BenchmarkListPageSearch times one searched page out of 10,000
// deployments, the dashboard's list at scale.
func BenchmarkListPageSearch(b *testing.B) {
	st := &memStore{}
	for i := range 10000 {
		st.ds = append(st.ds, serving.Deployment{Name: fmt.Sprintf("model-%05d", i), Spec: serving.Spec{Model: "m"}})
	}
	h := api.New(st, &fakeController{}, nil)
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/deployments?limit=50&search=model-0420", nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
