package gateway

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"

	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/valyala/fasthttp"
)

// Traffic splits (serving.Spec.Traffic): a deployment that serves several
// versions at once routes each request to one of its tracks, each a route
// of its own with its own replicas, held and woken like any deployment.
//
// A request chooses its track, first match wins:
//
//   - /v2/models/{m}/versions/{v}/...: the track serving registry version v;
//   - header Ebb-Version: the track with that tag ("v4", "canary") or
//     serving that version number;
//   - header Ebb-Route-Key: a hash of the key picks the track, the same one
//     for the same key while the weights leave it there (a canary that
//     grows keeps the keys it had);
//   - otherwise at random, by weight.
//
// The answer names the track that served it in the header Ebb-Version.
const (
	// VersionHeader pins a request to a traffic target, and names the one
	// that answered.
	VersionHeader = "Ebb-Version"
	// RouteKeyHeader makes a request stick to one traffic target.
	RouteKeyHeader = "Ebb-Route-Key"
)

var (
	headerVersion  = []byte(VersionHeader)
	headerRouteKey = []byte(RouteKeyHeader)
)

// track returns the route of the track of rt's split that serves ctx's
// request for version (the path's; may be empty), the version to forward
// with, and the track. It answers the request itself and returns nil when
// the version or tag asked for is not served.
func (g *Gateway) track(ctx *fasthttp.RequestCtx, rt *routing.Route, version []byte) (*routing.Route, string, *routing.Track) {
	h := &ctx.Request.Header
	tr, v, t := chooseTrack(g.routes, rt, b2s(version), b2s(h.PeekBytes(headerVersion)), h.PeekBytes(headerRouteKey))
	if tr == nil {
		writeError(ctx, http.StatusNotFound, noTrack(g.routes, rt, v))
		return nil, "", nil
	}
	ctx.Response.Header.SetCanonical(headerVersion, s2b(t.Tag))
	return tr, v, t
}

// chooseTrack picks the track of rt's split for a request of version (from
// the path), pin (the Ebb-Version header) and key (Ebb-Route-Key), any of
// them empty, and returns its route and the version to forward with. When
// nothing serves what was asked for, the route is nil and the version is
// what was asked for.
func chooseTrack(routes Routes, rt *routing.Route, version, pin string, key []byte) (*routing.Route, string, *routing.Track) {
	s := rt.Split
	var t *routing.Track
	switch {
	case version != "":
		t = findTrack(routes, s, version)
	case pin != "":
		if t = findTrack(routes, s, pin); t == nil {
			version = pin
		}
	case len(key) > 0:
		t = s.PickKey(b2s(key))
	default:
		t = s.Pick(rand.Uint64())
	}
	if t == nil {
		return nil, version, nil
	}
	tr := rt
	if t.Key != rt.Deployment {
		if tr = routes.Lookup(t.Key); tr == nil {
			// The control loop publishes a track before the split that
			// names it; a track gone since is being removed: its share
			// falls back to the primary.
			tr = rt
		}
	}
	if version != "" && tr.Version != version {
		version = "" // pinned by tag: any replica of the track
	}
	return tr, version, t
}

// findTrack returns the track of s tagged v, or serving registry version v
// (its OIP v2 form, "4"); nil if none.
func findTrack(routes Routes, s *routing.Split, v string) *routing.Track {
	if t := s.Find(v); t != nil {
		return t
	}
	for i := range s.Tracks {
		if rt := routes.Lookup(s.Tracks[i].Key); rt != nil && rt.Version == v {
			return &s.Tracks[i]
		}
	}
	return nil
}

// noTrack says that rt's split serves no version v, and what it serves.
func noTrack(routes Routes, rt *routing.Route, v string) string {
	return fmt.Sprintf("deployment %q serves no version %q: it serves %s; pin one with the %s header (a tag or a version number)", rt.Deployment, v, describeSplit(routes, rt.Split), VersionHeader)
}

// describeSplit says what a split serves: "v3 (version 3, 90%), canary
// (version 4, 10%)".
func describeSplit(routes Routes, s *routing.Split) string {
	parts := make([]string, len(s.Tracks))
	for i, t := range s.Tracks {
		v := ""
		if rt := routes.Lookup(t.Key); rt != nil && rt.Version != "" {
			v = "version " + rt.Version + ", "
		}
		parts[i] = fmt.Sprintf("%s (%s%d%%)", t.Tag, v, t.Weight)
	}
	return strings.Join(parts, ", ")
}
