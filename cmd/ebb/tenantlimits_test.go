package main

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/home"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// newLimitsServer serves the admin API as ebb up does, tenant limits
// included, and returns its URL and store.
func newLimitsServer(t *testing.T) (string, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := home.NewAdminAPI(home.AdminParts{Store: st, Ctl: &cliController{statuses: map[string]serving.Status{}}, Home: api.HomeUp,
		Version: version, Limits: st}, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Setenv(serverEnv, "")
	return srv.URL, st
}

func TestLimitsCLI(t *testing.T) {
	url, st := newLimitsServer(t)
	run := func(args ...string) (string, error) { return runEbb(t, "", append(args, "--server", url)...) }
	tests := []struct {
		name    string
		args    []string
		wantErr string   // "" for success
		want    []string // in the output
	}{
		{"empty list", []string{"limits", "list"}, "", []string{"No tenant limits"}},
		{"set", []string{"limits", "set", "acme", "--rate", "10", "--burst", "20"}, "",
			[]string{`limit of tenant "acme" created: 10 requests/s (burst 20)`}},
		{"set keeps the bounds not given", []string{"limits", "set", "acme", "--concurrency", "4"}, "",
			[]string{`limit of tenant "acme" changed: 10 requests/s (burst 20), 4 in flight`}},
		{"a new rate resets the burst", []string{"limits", "set", "acme", "--rate", "2.5"}, "",
			[]string{"2.5 requests/s (burst 3), 4 in flight"}},
		{"on a deployment", []string{"limits", "set", "acme", "--deployment", "diabetes", "--concurrency", "2", "--share", "3"}, "",
			[]string{`limit of tenant "acme" on deployment "diabetes" created: 2 in flight`}},
		{"the default", []string{"limits", "set", "*", "--rate", "1"}, "", []string{"every tenant (default) created: 1 requests/s (burst 1)"}},
		{"an exemption", []string{"limits", "set", "free", "--rate", "0"}, "", []string{`tenant "free" created: no bound (the tenant is exempt from the default, "*", at this level)`}},
		{"json", []string{"limits", "set", "acme", "--share", "2", "-o", "json"}, "", []string{`"share": 2`, `"generation": 4`}},
		{"no bound given", []string{"limits", "set", "acme"}, "give at least one of --rate", nil},
		{"invalid on the server", []string{"limits", "set", "a b", "--rate", "-1"}, `invalid limit: tenant: "a b" is not a tenant name`, nil},
		{"burst without rate", []string{"limits", "set", "x", "--burst", "3"}, "burst: is set without a rate", nil},
		{"bad output", []string{"limits", "list", "-o", "xml"}, "unknown output format", nil},
		{"list", []string{"limits", "list"}, "", []string{"TENANT", "DEPLOYMENT", "RATE", "CONCURRENCY", "SHARE",
			"*", "(all)", "1/s", "acme", "2.5/s", "diabetes", "free"}},
		{"list yaml", []string{"limits", "ls", "-o", "yaml"}, "", []string{"items:", "tenant: acme", "deployment: diabetes", "concurrency: 2"}},
		{"get", []string{"limits", "get", "acme", "--deployment", "diabetes"}, "", []string{"diabetes", "3"}},
		{"get missing", []string{"limits", "get", "nobody"}, `no limit of tenant "nobody" is set`, nil},
		{"delete", []string{"limits", "delete", "acme", "--deployment", "diabetes"}, "", []string{`limit of tenant "acme" on deployment "diabetes" deleted`}},
		{"delete missing", []string{"limits", "delete", "acme", "--deployment", "diabetes"}, `no limit of tenant "acme" on deployment "diabetes" is set`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ebb %s = %v\n%s\nwant an error with %q", strings.Join(tt.args, " "), err, out, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ebb %s: %v\n%s", strings.Join(tt.args, " "), err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("ebb %s printed\n%s\nwant it to contain %q", strings.Join(tt.args, " "), out, w)
				}
			}
		})
	}
	got, err := st.ListLimits(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []serving.Limit{
		{Tenant: "*", Rate: 1, Burst: 1},
		{Tenant: "acme", Rate: 2.5, Burst: 3, Concurrency: 4, Share: 2},
		{Tenant: "free"},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(serving.Limit{}, "Generation", "CreatedAt", "UpdatedAt")); diff != "" {
		t.Errorf("stored limits (-want +got):\n%s", diff)
	}
}
