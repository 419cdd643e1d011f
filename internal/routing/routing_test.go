package routing

import (
	"testing"

	"github.com/ebb-ml/ebb/internal/balance"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestPublishWakesOnlyTheReplacedRoute(t *testing.T) {
	var tab Table
	a1 := tab.Publish(Route{Deployment: "a"})
	b1 := tab.Publish(Route{Deployment: "b"})
	if closed(a1.Changed()) || closed(b1.Changed()) {
		t.Fatal("fresh routes already changed")
	}
	a2 := tab.Publish(Route{Deployment: "a", Endpoints: []*balance.Endpoint{balance.NewEndpoint("r", "u")}})
	if !closed(a1.Changed()) {
		t.Error("replaced route's Changed not closed")
	}
	if closed(b1.Changed()) {
		t.Error("publishing a woke the waiters of b")
	}
	if got := tab.Lookup("a"); got != a2 || len(got.Endpoints) != 1 {
		t.Errorf("Lookup(a) = %+v; want the new route", got)
	}
	tab.Remove("a")
	if !closed(a2.Changed()) || tab.Lookup("a") != nil {
		t.Error("Remove did not close Changed or left the route")
	}
	if n := tab.Len(); n != 1 {
		t.Errorf("Len = %d; want 1", n)
	}
	tab.Remove("missing") // no panic, no effect
}
