// Package discovery gives `ebb gateway` its routing table from the cluster
// and its line to the operator.
//
// Routes publishes one route per ModelDeployment of a namespace — every
// deployment gets one, so a request for a deployment at zero is held by the
// activator exactly as under `ebb up` — whose endpoints are its ready
// replicas (for a model hosted in a pool, the pool's replicas that its
// status says hold it: pooledReady), found one of two ways (Source):
//
//   - FromEndpointSlices (the default): the ready addresses of the
//     EndpointSlices of the deployment's headless Service, found by their
//     LabelDeployment label, which they inherit from the Service.
//   - FromPods: the replica pods themselves, those whose Ready condition is
//     True and that are not terminating — the same rule the EndpointSlice
//     controller applies. The test clusters need it: their pod IPs are
//     loopback addresses, which the API server refuses in EndpointSlices.
//
// A deployment whose Failed condition is True carries the condition's
// message as the route's Failure, so held requests fail fast. One pinned at
// zero (spec.replicas: 0) is routed as ScaledToZero: its requests are
// refused at once and never wake it. A route's Version is the registry
// version in the deployment's status (status.modelVersion), and each
// endpoint's the version its replica serves: the pod's LabelModelVersion
// (FromPods), else the replica's entry in status.replicaStatuses.
//
// A deployment with a shadow (spec.shadow) also gets the route of its
// shadow's track (name.shadow, its replicas those labelled with the track
// "shadow"), and its own route carries the routing.Shadow that mirrors to
// it, as `ebb up`'s control loop publishes them.
//
// Reporter sends what the gateway measures to the operator every second —
// the demand of every deployment and track, the completed buckets of the
// request meters (traffic.Meter) of every split's primary and tracks,
// which the operator merges for rollouts, and the tally of every shadow,
// which it sums — and Waker tells it at once when a request waits for a
// cold deployment or track.
package discovery

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/replica/kube"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/ebb-ml/ebb/internal/traffic"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Source is where Routes finds a deployment's ready replicas.
type Source string

// Sources.
const (
	FromEndpointSlices Source = "endpointslices"
	FromPods           Source = "pods"
)

// ParseSource returns the Source named s.
func ParseSource(s string) (Source, error) {
	switch Source(s) {
	case FromEndpointSlices, FromPods:
		return Source(s), nil
	}
	return "", fmt.Errorf("unknown endpoint source %q: use %s or %s", s, FromEndpointSlices, FromPods)
}

// object returns the kind of object the source watches.
func (s Source) object() client.Object {
	if s == FromPods {
		return &corev1.Pod{}
	}
	return &discoveryv1.EndpointSlice{}
}

// Routes keeps a routing.Table in line with the ModelDeployments and
// EndpointSlices of one namespace. Create it with NewRoutes and run it with
// Run.
type Routes struct {
	cache     cache.Cache
	namespace string
	source    Source
	table     *routing.Table
	log       *slog.Logger
	https     bool // set by UseHTTPS, before Run

	synced chan struct{} // closed once every route was published

	// mu guards deps, dirty and kick's meaning.
	mu    sync.Mutex
	deps  map[string]*route
	dirty map[string]bool
	kick  chan struct{} // cap 1: dirty has names
}

// route is the published state of one deployment.
type route struct {
	rec  *stats.Recorder
	eps  map[string]*balance.Endpoint // pod name → endpoint, reused across publishes
	last string                       // key of the latest published route
	// meter measures a traffic split's primary or track for rollouts,
	// reported to the operator (Reporter); nil for a deployment without
	// a split.
	meter *traffic.Meter
	// shadow is the data plane's view of a deployment's spec.shadow,
	// kept while its ID (serving.Shadow.ID) is unchanged; nil for none.
	shadow *routing.Shadow
}

// CacheOptions returns the cache options Routes needs: namespace only, and
// only the EndpointSlices (or pods) labelled LabelDeployment.
func CacheOptions(namespace string, source Source) cache.Options {
	has, _ := labels.NewRequirement(operator.LabelDeployment, selection.Exists, nil)
	return cache.Options{
		DefaultNamespaces: map[string]cache.Config{namespace: {}},
		ByObject: map[client.Object]cache.ByObject{
			source.object(): {Label: labels.NewSelector().Add(*has)},
		},
	}
}

// NewRoutes returns Routes that publish into table from c, a cache made
// with CacheOptions (and a scheme with v1alpha1). It starts nothing.
func NewRoutes(c cache.Cache, namespace string, source Source, table *routing.Table, log *slog.Logger) *Routes {
	if log == nil {
		log = slog.Default()
	}
	if source == "" {
		source = FromEndpointSlices
	}
	return &Routes{
		cache:     c,
		namespace: namespace,
		source:    source,
		table:     table,
		log:       log,
		synced:    make(chan struct{}),
		deps:      map[string]*route{},
		dirty:     map[string]bool{},
		kick:      make(chan struct{}, 1),
	}
}

// UseHTTPS makes the published endpoints https:// URLs: the replicas
// serve TLS on their port (mutual TLS with the gateway). Call it before
// Run.
func (r *Routes) UseHTTPS() { r.https = true }

// Synced is closed once the caches have synced and every deployment's route
// has been published.
func (r *Routes) Synced() <-chan struct{} { return r.synced }

// Run watches ModelDeployments and EndpointSlices (starting the cache) and
// publishes routes until ctx ends.
func (r *Routes) Run(ctx context.Context) error {
	for _, obj := range []client.Object{&v1alpha1.ModelDeployment{}, r.source.object()} {
		inf, err := r.cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watch %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    r.changed,
			UpdateFunc: func(_, o any) { r.changed(o) },
			DeleteFunc: r.changed,
		}); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- r.cache.Start(ctx) }()
	if !r.cache.WaitForCacheSync(ctx) {
		select {
		case err := <-errc:
			return fmt.Errorf("gateway cache: %w", err)
		default:
			return ctx.Err()
		}
	}
	var mds v1alpha1.ModelDeploymentList
	if err := r.cache.List(ctx, &mds, client.InNamespace(r.namespace)); err != nil {
		return err
	}
	for _, md := range mds.Items {
		r.mark(md.Name)
	}
	r.flush(ctx)
	close(r.synced)
	for {
		select {
		case <-ctx.Done():
			return <-errc
		case <-r.kick:
			r.flush(ctx)
		}
	}
}

// changed marks the deployment an object belongs to.
func (r *Routes) changed(obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	switch o := obj.(type) {
	case *v1alpha1.ModelDeployment:
		r.mark(o.Name)
	case *discoveryv1.EndpointSlice:
		if name := o.Labels[operator.LabelDeployment]; name != "" {
			r.mark(name)
		}
	case *corev1.Pod:
		if name := o.Labels[operator.LabelDeployment]; name != "" {
			r.mark(name)
		}
	}
}

func (r *Routes) mark(name string) {
	r.mu.Lock()
	r.dirty[name] = true
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// flush republishes every marked deployment.
func (r *Routes) flush(ctx context.Context) {
	r.mu.Lock()
	names := make([]string, 0, len(r.dirty))
	for n := range r.dirty {
		names = append(names, n)
	}
	clear(r.dirty)
	r.mu.Unlock()
	for _, n := range names {
		if err := r.sync(ctx, n); err != nil && ctx.Err() == nil {
			r.log.Warn("cannot route deployment", "deployment", n, "err", err)
		}
	}
}

// sync publishes (or removes) the route of one deployment from the cache.
func (r *Routes) sync(ctx context.Context, name string) error {
	var md v1alpha1.ModelDeployment
	err := r.cache.Get(ctx, client.ObjectKey{Namespace: r.namespace, Name: name}, &md)
	if client.IgnoreNotFound(err) != nil {
		return err
	}
	if err != nil || !md.DeletionTimestamp.IsZero() {
		r.mu.Lock()
		var had []string
		for key := range r.deps {
			if serving.ParentOf(key) == name {
				delete(r.deps, key)
				had = append(had, key)
			}
		}
		r.mu.Unlock()
		for _, key := range had {
			r.table.Remove(key)
		}
		if len(had) > 0 {
			r.log.Info("deployment removed", "deployment", name)
		}
		return nil
	}
	var ready []readyEndpoint
	if md.Spec.Pool != nil {
		ready = pooledReady(&md)
	} else if ready, err = r.ready(ctx, name); err != nil {
		return err
	}
	versions, tracks := map[string]string{}, map[string]string{}
	for _, rs := range md.Status.ReplicaStatuses {
		versions[rs.ID] = serving.OIPVersion(rs.ModelVersion)
		tracks[rs.ID] = rs.Track
	}
	byTrack := map[string][]readyEndpoint{}
	for _, e := range ready {
		if e.version == "" {
			e.version = versions[e.id]
		}
		if e.track == "" && r.source != FromPods {
			t, known := tracks[e.id]
			if !known && (len(md.Spec.Traffic) > 0 || md.Spec.Shadow != nil) {
				// An EndpointSlice does not say which target (or
				// shadow) a pod serves; until the status does, it
				// takes no traffic.
				continue
			}
			e.track = t
		}
		byTrack[e.track] = append(byTrack[e.track], e)
	}
	split := md.Spec.Tracks(name)
	route := r.route(name, byTrack[""], operator.FailureOf(&md))
	route.Meter = r.meter(name, split != nil)
	route.ScaledToZero = md.Spec.ScaledToZero()
	route.Version = serving.OIPVersion(md.Status.ModelVersion)
	route.Model = cmp.Or(md.Status.ModelVersion, md.Spec.Model)
	route.Metadata = md.Status.Metadata
	if md.Spec.OpenAI() {
		route.Protocol = serving.ProtocolOpenAI
	}
	route.Routing = md.Spec.Routing
	route.Scatter = md.Spec.Scatter
	route.MaxConcurrency = md.Spec.Scaling.MaxConcurrency
	keep := map[string]bool{name: true}
	var tracksOut []routing.Track
	for _, t := range split {
		tracksOut = append(tracksOut, routing.Track{Key: t.Key, Tag: t.Tag, Weight: t.Weight})
		if t.Primary {
			continue
		}
		keep[t.Key] = true
		tr := r.route(t.Key, byTrack[t.Tag], "")
		tr.Meter = r.meter(t.Key, true)
		tr.ScaledToZero = route.ScaledToZero
		tr.Model = t.Model
		tr.Routing = route.Routing
		tr.Scatter = route.Scatter
		tr.MaxConcurrency = route.MaxConcurrency
		for _, ts := range md.Status.Traffic {
			if ts.Tag == t.Tag {
				tr.Version = serving.OIPVersion(ts.ModelVersion)
				tr.Model = cmp.Or(ts.ModelVersion, t.Model)
			}
		}
		r.publish(tr) // a track is routed before the split that names it
	}
	if tracksOut != nil {
		if route.Split, err = routing.NewSplit(tracksOut); err != nil {
			r.log.Warn("invalid traffic split: the primary takes every request", "deployment", name, "err", err)
		}
	}
	if t, ok := md.Spec.ShadowTrack(name); ok {
		// The shadow runs as a track of its own, which only the
		// primary's mirrored requests reach.
		keep[t.Key] = true
		tr := r.route(t.Key, byTrack[t.Tag], "")
		tr.Meter = r.meter(t.Key, true)
		tr.ScaledToZero = route.ScaledToZero
		tr.Model = t.Model
		tr.Version = sameVersion(tr.Endpoints)
		r.publish(tr)
	}
	route.Shadow = r.shadow(name, md.Spec.Shadow)
	r.publish(route)
	r.mu.Lock()
	var gone []string
	for key := range r.deps {
		if key != name && serving.ParentOf(key) == name && !keep[key] {
			delete(r.deps, key)
			gone = append(gone, key)
		}
	}
	r.mu.Unlock()
	for _, key := range gone {
		r.table.Remove(key)
	}
	return nil
}

// route builds the route of one deployment or track (key) from its ready
// endpoints, reusing the endpoints it routed before.
func (r *Routes) route(key string, ready []readyEndpoint, failure string) routing.Route {
	r.mu.Lock()
	rt := r.deps[key]
	if rt == nil {
		rt = &route{rec: &stats.Recorder{}, eps: map[string]*balance.Endpoint{}}
		r.deps[key] = rt
	}
	r.mu.Unlock()
	eps := make([]*balance.Endpoint, 0, len(ready))
	keep := map[string]*balance.Endpoint{}
	for _, e := range ready {
		if r.https {
			e.url = "https://" + strings.TrimPrefix(e.url, "http://")
		}
		ep := rt.eps[e.id]
		if ep == nil || ep.URL != e.url || ep.Version != e.version {
			ep = balance.NewEndpoint(e.id, e.url)
			ep.Version = e.version
		}
		keep[e.id] = ep
		eps = append(eps, ep)
	}
	rt.eps = keep
	if len(eps) > 0 {
		failure = ""
	}
	return routing.Route{Deployment: key, Endpoints: eps, Failure: failure, Stats: rt.rec}
}

// meter returns the Meter of the route keyed key (routed already) when on,
// creating it on first need and keeping it while the route lives;
// otherwise it drops the route's Meter and returns nil.
func (r *Routes) meter(key string, on bool) *traffic.Meter {
	r.mu.Lock()
	defer r.mu.Unlock()
	rt := r.deps[key]
	switch {
	case !on:
		rt.meter = nil
	case rt.meter == nil:
		rt.meter = traffic.NewMeter(0, 0)
	}
	return rt.meter
}

// publish publishes route unless it is what was published last.
func (r *Routes) publish(route routing.Route) {
	key := fmt.Sprintf("%s\x00%t\x00%s\x00%s\x00%t\x00%s\x00%p\x00%p\x00%d", route.Failure, route.ScaledToZero, route.Version, route.Model, route.Metadata != nil, route.Protocol, route.Meter, route.Shadow, route.MaxConcurrency)
	if s := route.Split; s != nil {
		for _, t := range s.Tracks {
			key += fmt.Sprintf("\x00%s=%s/%d", t.Key, t.Tag, t.Weight)
		}
	}
	if rr := route.Routing; rr != nil {
		key += fmt.Sprintf("\x00routing=%s/%g/%d", rr.Policy, rr.LoadFactor, rr.PrefixBytes)
		if rr.Key != nil {
			key += "/" + rr.Key.Header + "/" + rr.Key.Input
		}
	}
	if sc := route.Scatter; sc != nil {
		key += fmt.Sprintf("\x00scatter=%d/%d", sc.SegmentRows, sc.MaxSegments)
	}
	for _, ep := range route.Endpoints {
		key += "\x00" + ep.ID + "=" + ep.URL + "@" + ep.Version
	}
	r.mu.Lock()
	rt := r.deps[route.Deployment]
	same := rt != nil && key == rt.last
	if rt != nil {
		rt.last = key
	}
	r.mu.Unlock()
	if same && r.table.Lookup(route.Deployment) != nil {
		return
	}
	r.table.Publish(route)
	r.log.Debug("route published", "deployment", route.Deployment, "endpoints", len(route.Endpoints), "failure", route.Failure)
}

// Recorders returns the demand recorder of every routed deployment.
func (r *Routes) Recorders() map[string]*stats.Recorder {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]*stats.Recorder, len(r.deps))
	for n, rt := range r.deps {
		out[n] = rt.rec
	}
	return out
}

// Meters returns the Meter of every routed split's primary and tracks, by
// route key.
func (r *Routes) Meters() map[string]*traffic.Meter {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]*traffic.Meter{}
	for n, rt := range r.deps {
		if rt.meter != nil {
			out[n] = rt.meter
		}
	}
	return out
}

// ready lists the ready replicas of a deployment from the source.
func (r *Routes) ready(ctx context.Context, name string) ([]readyEndpoint, error) {
	opts := []client.ListOption{client.InNamespace(r.namespace), client.MatchingLabels{operator.LabelDeployment: name}}
	if r.source == FromPods {
		var pods corev1.PodList
		if err := r.cache.List(ctx, &pods, opts...); err != nil {
			return nil, err
		}
		return readyPods(pods.Items), nil
	}
	var sl discoveryv1.EndpointSliceList
	if err := r.cache.List(ctx, &sl, opts...); err != nil {
		return nil, err
	}
	return readyEndpoints(sl.Items), nil
}

// pooledReady lists the replicas of a model hosted in a pool (spec.pool)
// that hold it ready, as the leader's control loop last wrote them to its
// status: which of the pool's pods hold which model is the loop's
// placement, which no label or EndpointSlice carries. A pool pod that
// dies leaves the status within the operator's status period (a second by
// default), as a replica pod that dies leaves its EndpointSlice a moment
// after it went.
func pooledReady(md *v1alpha1.ModelDeployment) []readyEndpoint {
	var out []readyEndpoint
	for _, rs := range md.Status.ReplicaStatuses {
		if rs.State == serving.ReplicaReady && rs.Endpoint != "" {
			out = append(out, readyEndpoint{id: rs.ID, url: rs.Endpoint, version: serving.OIPVersion(rs.ModelVersion)})
		}
	}
	return out
}

// readyEndpoint is a ready replica: its pod name, URL and, when the pod
// says, the registry version it serves (OIP v2 form) and the traffic
// target it serves (its tag; empty for the primary).
type readyEndpoint struct{ id, url, version, track string }

// readyPods returns the pods that are Ready, have an IP and are not
// terminating, sorted by name; the port is the replica container's port
// named "http", else operator.ReplicaPort.
func readyPods(pods []corev1.Pod) []readyEndpoint {
	var out []readyEndpoint
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" || !podReady(p) {
			continue
		}
		port := int32(operator.ReplicaPort)
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == "http" {
					port = cp.ContainerPort
				}
			}
		}
		out = append(out, readyEndpoint{id: p.Name, url: "http://" + net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(port))), version: p.Labels[kube.LabelModelVersion], track: p.Labels[kube.LabelTrack]})
	}
	slices.SortFunc(out, func(a, b readyEndpoint) int { return cmp.Compare(a.id, b.id) })
	return out
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readyEndpoints returns the ready, not terminating endpoints of slices,
// one per pod, sorted by pod name.
func readyEndpoints(items []discoveryv1.EndpointSlice) []readyEndpoint {
	seen := map[string]bool{}
	var out []readyEndpoint
	for _, s := range items {
		port := int32(operator.ReplicaPort)
		for _, p := range s.Ports {
			if p.Port != nil && (p.Name == nil || *p.Name == "http") {
				port = *p.Port
				break
			}
		}
		for _, e := range s.Endpoints {
			c := e.Conditions
			if (c.Ready != nil && !*c.Ready) || (c.Terminating != nil && *c.Terminating) || len(e.Addresses) == 0 {
				continue
			}
			id := e.Addresses[0]
			if e.TargetRef != nil && e.TargetRef.Name != "" {
				id = e.TargetRef.Name
			}
			if seen[id] {
				continue
			}
			seen[id] = true
			out = append(out, readyEndpoint{id: id, url: "http://" + net.JoinHostPort(e.Addresses[0], strconv.Itoa(int(port)))})
		}
	}
	slices.SortFunc(out, func(a, b readyEndpoint) int { return cmp.Compare(a.id, b.id) })
	return out
}
