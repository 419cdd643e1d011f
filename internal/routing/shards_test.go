package routing

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

func shardRoute(name string, rules ...string) serving.Route {
	r := serving.Route{Name: name, Spec: serving.RouteSpec{Match: serving.RouteMatch{Header: "X-Region"}}}
	for i := 0; i+1 < len(rules); i += 2 {
		r.Spec.Rules = append(r.Spec.Rules, serving.RouteRule{Value: rules[i], Deployment: rules[i+1]})
	}
	return r
}

func TestShardsSetLookup(t *testing.T) {
	var nilTable *Shards
	if nilTable.Lookup("x") != nil {
		t.Fatal("a nil table found a route")
	}
	var tab Shards
	if tab.Lookup("classify") != nil || tab.Names() != nil {
		t.Fatal("an empty table found a route")
	}
	good := shardRoute("classify", "eu", "classify-eu", "us", "classify-us")
	good.Spec.Default = "classify-global"
	bad := shardRoute("broken", "eu", "a", "eu", "b") // a value twice
	err := tab.Set([]serving.Route{good, bad, shardRoute("tasks", "x", "y")})
	if err == nil || !strings.Contains(err.Error(), "route broken") {
		t.Errorf("Set = %v, want the invalid route's error", err)
	}
	if got := tab.Names(); !slices.Equal(got, []string{"classify", "tasks"}) {
		t.Errorf("Names() = %q, want the valid routes", got)
	}
	sh := tab.Lookup("classify")
	tests := []struct {
		value  string
		found  bool
		want   string
		wantOK bool
	}{
		{"eu", true, "classify-eu", true},
		{"us", true, "classify-us", true},
		{"apac", true, "classify-global", true},
		{"", false, "classify-global", true},
	}
	for _, tt := range tests {
		if got, ok := sh.Target([]byte(tt.value), tt.found); got != tt.want || ok != tt.wantOK {
			t.Errorf("Target(%q, %v) = %q, %v; want %q, %v", tt.value, tt.found, got, ok, tt.want, tt.wantOK)
		}
	}
	if _, ok := tab.Lookup("tasks").Target([]byte("z"), true); ok {
		t.Errorf("a route without a default picked a deployment for an unknown value")
	}
	if got := sh.Values(); !slices.Equal(got, []string{"eu", "us"}) {
		t.Errorf("Values() = %q", got)
	}
	if allocs := testing.AllocsPerRun(100, func() { sh.Target([]byte("eu"), true) }); allocs != 0 {
		t.Errorf("Target allocates %v times", allocs)
	}
}

func TestShardsReload(t *testing.T) {
	var tab Shards
	ctx := context.Background()
	routes := []serving.Route{shardRoute("classify", "eu", "classify-eu")}
	list := func(context.Context) ([]serving.Route, error) { return routes, nil }
	if err := tab.Reload(ctx, list); err != nil || tab.Lookup("classify") == nil {
		t.Fatalf("Reload = %v; route found: %v", err, tab.Lookup("classify") != nil)
	}
	down := errors.New("store down")
	if err := tab.Reload(ctx, func(context.Context) ([]serving.Route, error) { return nil, down }); !errors.Is(err, down) {
		t.Errorf("Reload of a failing list = %v, want its error", err)
	}
	if tab.Lookup("classify") == nil {
		t.Errorf("a failed list emptied the table")
	}

	// Follow picks up changes on its interval and stops with ctx.
	routes = nil
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { tab.Follow(fctx, list, 5*time.Millisecond, nil); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for tab.Lookup("classify") != nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if tab.Lookup("classify") != nil {
		t.Errorf("Follow did not drop the deleted route")
	}
}
