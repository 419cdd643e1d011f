package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/valyala/fasthttp"
)

// Model metadata and readiness never wake a deployment.
//
// GET /v2/models/{m}[/versions/{v}] goes to a ready replica (of version v)
// when there is one, and the answer is remembered. Without one it is
// answered, in this order, from
//
//  1. the metadata this gateway last saw from a replica of what the
//     deployment now serves (routing.Route.Model), of version v if asked;
//  2. the registry version's signature, which the control loop publishes
//     with the route (routing.Route.Metadata), when v is the deployment's
//     version or not asked;
//  3. otherwise 503 deployment/metadata_unavailable, saying the deployment
//     is at zero and its metadata comes with its first request (or why it
//     cannot start, or that its owner scaled it to zero).
//
// The response header Ebb-Metadata-Source says which: replica, cache or
// registry.
//
// GET /v2/models/{m}[/versions/{v}]/ready answers whether a request would
// be served: ready (200) with a ready replica, or at zero when a request
// would start one; not ready (503) when the deployment cannot start
// replicas (status.failure) or its owner scaled it to zero
// (spec.replicas: 0), since requests are then refused.
//
// Versions: a deployment of a registry version serves /versions/{v} for v
// its routed replicas serve (during a rollout, the old and the new one) and
// for its current version, whose requests are held and wake it like
// unversioned ones. Any other v is 404 deployment/version_not_found, naming
// the versions served. A deployment of a model given by path has no
// version: every /versions/{v} is 404.

// errCold is peek's answer for a deployment without a ready replica.
var errCold = errors.New("no ready replica")

// peek is the Holder of metadata requests: it returns the route when it has
// a ready endpoint, and never holds or wakes.
type peek struct{ routes Routes }

func (p *peek) WaitTenant(_ context.Context, name, _ string) (*routing.Route, error) {
	rt := p.routes.Lookup(name)
	switch {
	case rt == nil:
		return nil, activator.ErrNotFound
	case len(rt.Endpoints) == 0:
		return nil, errCold
	}
	return rt, nil
}

// metadata answers GET /v2/models/{name}[/versions/{version}].
func (g *Gateway) metadata(ctx *fasthttp.RequestCtx, name, version []byte) {
	start := g.opts.Clock.Now()
	rt := g.routes.Lookup(b2s(name))
	if rt == nil {
		// Not a deployment: a route object may pick one (shardroute.go).
		if rt, version = g.shardLookup(ctx, name, version, true); rt == nil {
			return
		}
	}
	// Not counted as demand: polling metadata must not keep a deployment
	// warm.
	dep := rt.Deployment
	s := g.opts.Metrics.start(dep)
	x := g.acquire(ctx)
	defer x.release()
	code := g.forwardTo(ctx, x, rt, dep, b2s(version), modeMeta, ctx.Path())
	s.end(code, versionLabel(rt, x.last(), ""), g.opts.Clock.Since(start))
}

// metadataAtZero answers a metadata request for a deployment that has no
// ready replica (of version).
func (g *Gateway) metadataAtZero(ctx *fasthttp.RequestCtx, name, version string) int {
	rt := g.routes.Lookup(name)
	if rt == nil {
		return writeError(ctx, http.StatusNotFound, notFound(name))
	}
	m, source, ok := knownMetadata(&g.meta, rt, version)
	if !ok {
		code, msg := noMetadata(rt, version)
		if code == codeScaledToZero {
			return writeErrorCode(ctx, http.StatusServiceUnavailable, code, msg)
		}
		return writeErrorCode(ctx, http.StatusServiceUnavailable, codeNoMetadata, msg)
	}
	ctx.Response.Header.Set("Ebb-Metadata-Source", source)
	writeJSON(ctx, http.StatusOK, m)
	return http.StatusOK
}

// knownMetadata returns the metadata of rt's deployment (of version, if
// set) known without a replica, and where it comes from: "cache" or
// "registry".
func knownMetadata(c *metaCache, rt *routing.Route, version string) (oip.ModelMetadata, string, bool) {
	if m, ok := c.get(rt, version); ok {
		return m, "cache", true
	}
	if rt.Metadata != nil && (version == "" || version == rt.Version) {
		return *rt.Metadata, "registry", true
	}
	return oip.ModelMetadata{}, "", false
}

// noMetadata says why no metadata of rt's deployment can be given now.
func noMetadata(rt *routing.Route, version string) (code, msg string) {
	name := rt.Deployment
	switch {
	case rt.ScaledToZero:
		return codeScaledToZero, scaledToZero(name) + "; its metadata is unknown until it runs"
	case rt.Failure != "":
		return codeNoMetadata, fmt.Sprintf("deployment %q cannot start a replica, so its metadata is unknown: %s", name, rt.Failure)
	}
	what := fmt.Sprintf("deployment %q", name)
	if version != "" {
		what += " version " + version
	}
	return codeNoMetadata, fmt.Sprintf("%s is at zero replicas and its model has no registry signature: its metadata will be available after its first request (POST /v2/models/%s/infer starts a replica); metadata requests do not start one", what, name)
}

// copyMetadata passes a replica's metadata answer on and caches it.
func (g *Gateway) copyMetadata(ctx *fasthttp.RequestCtx, x *exchange, rt *routing.Route, ep *balance.Endpoint) int {
	b := x.resp.Body()
	if len(b) > maxMetadataBytes {
		b = b[:maxMetadataBytes]
	}
	status := x.resp.StatusCode()
	if status == http.StatusOK {
		var m oip.ModelMetadata
		if json.Unmarshal(b, &m) == nil {
			g.meta.put(rt, ep, m)
		}
	}
	if ct := x.resp.Header.ContentType(); len(ct) > 0 {
		ctx.Response.Header.SetContentTypeBytes(ct)
	}
	ctx.Response.Header.Set(replicaHeader, ep.ID)
	ctx.Response.Header.Set("Ebb-Metadata-Source", "replica")
	ctx.SetStatusCode(status)
	ctx.SetBody(b)
	return status
}

// maxMetadataBytes bounds a replica's metadata answer.
const maxMetadataBytes = 4 << 20

// metaCache remembers, per deployment, the latest model metadata a replica
// answered, with what the deployment served then. Safe for concurrent use.
type metaCache struct {
	m sync.Map // deployment → *metaEntry
}

type metaEntry struct {
	model   string // routing.Route.Model when it was seen
	version string // the replica's version
	meta    oip.ModelMetadata
}

// put remembers m, answered by ep, a replica of rt's deployment, when ep
// serves what new replicas serve (not an old version in a rollout).
func (c *metaCache) put(rt *routing.Route, ep *balance.Endpoint, m oip.ModelMetadata) {
	if ep.Version != rt.Version {
		return
	}
	c.m.Store(rt.Deployment, &metaEntry{model: rt.Model, version: ep.Version, meta: m})
}

// get returns the remembered metadata of rt's deployment if it is of what
// the deployment serves now (and of version, if set).
func (c *metaCache) get(rt *routing.Route, version string) (oip.ModelMetadata, bool) {
	v, ok := c.m.Load(rt.Deployment)
	if !ok {
		return oip.ModelMetadata{}, false
	}
	e := v.(*metaEntry)
	if e.model != rt.Model || (version != "" && version != e.version) {
		return oip.ModelMetadata{}, false
	}
	return e.meta, true
}

// modelReady answers GET /v2/models/{name}[/versions/{version}]/ready
// without waking the deployment (see the top of this file).
func (g *Gateway) modelReady(ctx *fasthttp.RequestCtx, name, version []byte) {
	rt := g.routes.Lookup(b2s(name))
	if rt == nil {
		// Not a deployment: a route object may pick one (shardroute.go).
		if rt, version = g.shardLookup(ctx, name, version, false); rt == nil {
			return
		}
	}
	ready, known := readiness(rt, b2s(version))
	if !known {
		writeVersionNotFound(ctx, rt, b2s(version))
		return
	}
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(ctx, code, oip.ModelReady{Name: rt.Deployment, Ready: ready})
}

// readiness reports whether a request for rt's deployment (of version, if
// set) would be served, and false for known when the deployment does not
// serve version at all.
func readiness(rt *routing.Route, version string) (ready, known bool) {
	if version != "" {
		if rt.Serves(version) {
			return true, true
		}
		if version != rt.Version {
			return false, false
		}
	} else if len(rt.Endpoints) > 0 {
		return true, true
	}
	return rt.Failure == "" && !rt.ScaledToZero, true
}

// scaledToZero is the message of requests refused because the owner pinned
// the deployment at zero.
func scaledToZero(name string) string {
	return fmt.Sprintf("deployment %q was scaled to zero by its owner (spec.replicas is 0), so requests do not start it: run `ebb scale %s --auto` to autoscale it again, or `ebb scale %s --replicas N` to run N replicas", name, name, name)
}

// versionNotFound says that rt's deployment does not serve version.
func versionNotFound(rt *routing.Route, version string) string {
	vs := rt.Versions()
	if len(vs) == 0 {
		return fmt.Sprintf("deployment %q has no version %q: it serves a model given by path, which has no registry version; use /v2/models/%s/infer without /versions/", rt.Deployment, version, rt.Deployment)
	}
	return fmt.Sprintf("deployment %q has no version %q: it serves %s %s", rt.Deployment, version, plural(len(vs), "version", "versions"), strings.Join(vs, ", "))
}

func writeVersionNotFound(ctx *fasthttp.RequestCtx, rt *routing.Route, version string) int {
	return writeErrorCode(ctx, http.StatusNotFound, codeVersionNotFound, versionNotFound(rt, version))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
