package discovery

import (
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// shadow returns the data plane's view of sh, the spec.shadow of
// deployment name (routed already), as the control loop of `ebb up` builds
// it: nil for none; the one returned before while sh's ID is the same, so
// its Tally and InFlight go on counting; a new one, counting afresh, for a
// new shadow.
func (r *Routes) shadow(name string, sh *serving.Shadow) *routing.Shadow {
	r.mu.Lock()
	defer r.mu.Unlock()
	rt := r.deps[name]
	switch {
	case sh == nil:
		rt.shadow = nil
	case rt.shadow == nil || rt.shadow.ID != sh.ID():
		rt.shadow = routing.NewShadow(name, sh)
	}
	return rt.shadow
}

// sameVersion returns the version every endpoint serves; "" when they
// differ or none says.
func sameVersion(eps []*balance.Endpoint) string {
	v := ""
	for i, ep := range eps {
		if i > 0 && ep.Version != v {
			return ""
		}
		v = ep.Version
	}
	return v
}

// Shadows returns, by deployment, what the gateway compared of each routed
// deployment's shadow so far, with the shadow's ID.
func (r *Routes) Shadows() map[string]operator.ShadowReport {
	type routed struct {
		id    string
		tally *traffic.Tally
	}
	r.mu.Lock()
	var shadows map[string]routed
	for n, rt := range r.deps {
		if rt.shadow != nil {
			if shadows == nil {
				shadows = map[string]routed{}
			}
			shadows[n] = routed{rt.shadow.ID, rt.shadow.Tally}
		}
	}
	r.mu.Unlock()
	if shadows == nil {
		return nil
	}
	out := make(map[string]operator.ShadowReport, len(shadows))
	for n, s := range shadows {
		out[n] = operator.ShadowReport{ID: s.id, Tally: s.tally.Snapshot()}
	}
	return out
}
