package operator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// DemandPath and WakePath are where gateways send demand reports and
// wake-ups (POST, JSON).
const (
	DemandPath = "/ebb/v1/demand"
	WakePath   = "/ebb/v1/wake/"
	// LimitsPath is where gateways read the tenant limits (GET, with an
	// ETag), which the operator serves from its SQL store.
	LimitsPath = "/ebb/v1/limits"
)

// DemandAnswer answers a demand report.
type DemandAnswer struct {
	// Gateways counts the gateways whose reports are current, the
	// reporter included: each enforces 1/Gateways of every tenant limit.
	Gateways int `json:"gateways"`
	// WantRequests asks the gateway to send a Full RequestReport next:
	// the operator does not know all its counters (RequestTotals).
	WantRequests bool `json:"wantRequests,omitempty"`
}

// DemandReport is what one gateway pod measured since its previous report.
// Deployments it saw no request for may be left out.
type DemandReport struct {
	// Gateway identifies the reporting gateway (its pod name).
	Gateway string `json:"gateway"`
	// Deployments maps a deployment name to its demand at that gateway.
	Deployments map[string]GatewayDemand `json:"deployments"`
	// Meters maps the route key of a traffic split's primary (the
	// deployment's name) or track (name.tag) to the buckets of its
	// traffic.Meter that completed since the gateway's last report the
	// operator answered, oldest first (traffic.Meter.Export). Optional: a
	// gateway without meters leaves it out.
	Meters map[string][]traffic.Bucket `json:"meters,omitempty"`
	// Shadows maps the name of a deployment with a shadow (spec.shadow)
	// to what the gateway compared of it so far: its tally, whole, with
	// the shadow's ID. Optional: a gateway mirroring nothing leaves it
	// out.
	Shadows map[string]ShadowReport `json:"shadows,omitempty"`
	// Requests carries the gateway's cumulative request counters, which
	// the operator sums into its request statistics (RequestTotals).
	// Optional: a gateway without them leaves it out.
	Requests *RequestReport `json:"requests,omitempty"`
}

// GatewayDemand is one deployment's demand at one gateway.
type GatewayDemand struct {
	// InFlight counts the requests being served or held right now.
	InFlight int `json:"inFlight"`
	// Concurrency is the time-weighted average of requests in flight over
	// the interval since the previous report.
	Concurrency float64 `json:"concurrency"`
	// Requests counts the requests that arrived in that interval.
	Requests int `json:"requests"`
}

// WakeRequest is the body of a wake-up: the gateway's held requests for the
// deployment, so that the autoscaler sees them at once, before the next
// demand report.
type WakeRequest struct {
	Gateway  string `json:"gateway"`
	InFlight int    `json:"inFlight"`
}

// Demand sums the demand that gateways report, for the control loop
// (it implements control.Demand). A gateway's report counts until it is
// older than the expiry, so a gateway that dies stops counting within a
// few seconds. It is safe for concurrent use.
type Demand struct {
	expiry   time.Duration
	now      func() time.Time
	meters   *Meters
	shadows  *Shadows
	requests *RequestTotals

	// mu guards deps and seen.
	mu   sync.Mutex
	deps map[string]map[string]*gatewayDemand // deployment → gateway → demand
	seen map[string]time.Time                 // gateway → its latest report
}

// gatewayDemand accumulates one gateway's reports for one deployment
// between two samples of the control loop.
type gatewayDemand struct {
	seen     time.Time // when the latest report arrived
	inFlight int
	latest   float64 // concurrency of the latest report
	sum      float64 // concurrencies reported since the last Sample
	reports  int     // how many
	requests int     // requests reported since the last Sample
}

// NewDemand returns a Demand whose reports expire after expiry (default 5s)
// as measured by now (default time.Now).
func NewDemand(expiry time.Duration, now func() time.Time) *Demand {
	if expiry <= 0 {
		expiry = 5 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	return &Demand{expiry: expiry, now: now, meters: NewMeters(now), shadows: NewShadows(now), requests: NewRequestTotals(0, now), deps: map[string]map[string]*gatewayDemand{}, seen: map[string]time.Time{}}
}

// Gateways counts the gateways whose latest report is younger than the
// expiry, forgetting the others.
func (d *Demand) Gateways() int {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for gw, t := range d.seen {
		if now.Sub(t) > d.expiry {
			delete(d.seen, gw)
		}
	}
	return len(d.seen)
}

// Meters returns the request meters the gateways report, merged: what a
// rollout measures of its versions.
func (d *Demand) Meters() *Meters { return d.meters }

// Shadows returns the shadow tallies the gateways report, per deployment
// and gateway.
func (d *Demand) Shadows() *Shadows { return d.shadows }

// Requests returns the request counters the gateways report, summed per
// deployment: the reqstats.Source of the request statistics.
func (d *Demand) Requests() *RequestTotals { return d.requests }

// Report records a gateway's report, merges its meters into Meters and
// keeps its shadow tallies in Shadows (meters that fail CheckMeters, and
// shadows that fail CheckShadows, are left out). A deployment the gateway
// reported before and leaves out now counts as idle at that gateway.
func (d *Demand) Report(r DemandReport) {
	if len(r.Meters) > 0 {
		_ = d.meters.Merge(r.Gateway, r.Meters)
	}
	if len(r.Shadows) > 0 {
		_ = d.shadows.Report(r.Gateway, r.Shadows)
	}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen[r.Gateway] = now
	for name, gws := range d.deps {
		if g := gws[r.Gateway]; g != nil {
			if _, ok := r.Deployments[name]; !ok {
				g.seen, g.inFlight, g.latest = now, 0, 0
			}
		}
	}
	for name, dm := range r.Deployments {
		g := d.gatewayLocked(name, r.Gateway)
		g.seen = now
		g.inFlight = max(dm.InFlight, 0)
		g.latest = max(dm.Concurrency, 0)
		g.sum += g.latest
		g.reports++
		g.requests += max(dm.Requests, 0)
	}
}

// Held records that a gateway holds inFlight requests for a deployment
// right now (a wake-up), without waiting for its next report.
func (d *Demand) Held(deployment, gateway string, inFlight int) {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	g := d.gatewayLocked(deployment, gateway)
	g.seen = now
	g.inFlight = max(g.inFlight, inFlight, 1)
}

func (d *Demand) gatewayLocked(deployment, gateway string) *gatewayDemand {
	gws := d.deps[deployment]
	if gws == nil {
		gws = map[string]*gatewayDemand{}
		d.deps[deployment] = gws
	}
	g := gws[gateway]
	if g == nil {
		g = &gatewayDemand{}
		gws[gateway] = g
	}
	return g
}

// Sample returns the deployment's demand summed over the gateways since the
// previous Sample: the requests they reported, and the sum of each
// gateway's average concurrency (its latest one when it sent no report in
// between).
func (d *Demand) Sample(deployment string, now time.Time) stats.Sample {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := stats.Sample{At: now}
	for gw, g := range d.deps[deployment] {
		if d.expiredLocked(g) {
			delete(d.deps[deployment], gw)
			continue
		}
		s.Requests += g.requests
		if g.reports > 0 {
			s.Concurrency += g.sum / float64(g.reports)
		} else {
			s.Concurrency += g.latest
		}
		g.sum, g.reports, g.requests = 0, 0, 0
	}
	if len(d.deps[deployment]) == 0 {
		delete(d.deps, deployment)
	}
	return s
}

// InFlight returns the requests that the gateways serve or hold for the
// deployment, as of their latest reports.
func (d *Demand) InFlight(deployment string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, g := range d.deps[deployment] {
		if !d.expiredLocked(g) {
			n += g.inFlight
		}
	}
	return n
}

func (d *Demand) expiredLocked(g *gatewayDemand) bool {
	return d.now().Sub(g.seen) > d.expiry
}

// Waker is told that requests wait for a deployment with no ready replica;
// *control.Controller is one.
type Waker interface {
	Wake(deployment string)
}

// Handler returns the HTTP API gateways call: POST DemandPath with a
// DemandReport, and POST WakePath+{deployment} with a WakeRequest, which
// records the held requests and wakes the deployment.
func (d *Demand) Handler(w Waker) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+DemandPath, func(rw http.ResponseWriter, r *http.Request) {
		var rep DemandReport
		if err := decodeJSON(r, &rep); err != nil {
			httpError(rw, http.StatusBadRequest, err)
			return
		}
		if rep.Gateway == "" {
			httpError(rw, http.StatusBadRequest, fmt.Errorf("demand report has no gateway: set \"gateway\" to the gateway's pod name"))
			return
		}
		if err := CheckMeters(rep.Meters); err != nil {
			httpError(rw, http.StatusBadRequest, fmt.Errorf("demand report from gateway %q: %w: the gateway and the operator must run the same ebb version", rep.Gateway, err))
			return
		}
		if err := CheckShadows(rep.Shadows); err != nil {
			httpError(rw, http.StatusBadRequest, fmt.Errorf("demand report from gateway %q: %w: the gateway and the operator must run the same ebb version", rep.Gateway, err))
			return
		}
		if err := CheckRequests(rep.Requests); err != nil {
			httpError(rw, http.StatusBadRequest, fmt.Errorf("demand report from gateway %q: %w: the gateway and the operator must run the same ebb version", rep.Gateway, err))
			return
		}
		d.Report(rep)
		want := d.requests.Report(rep.Gateway, rep.Requests)
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(DemandAnswer{Gateways: max(d.Gateways(), 1), WantRequests: want})
	})
	mux.HandleFunc("POST "+WakePath+"{deployment}", func(rw http.ResponseWriter, r *http.Request) {
		var wr WakeRequest
		if r.ContentLength != 0 {
			if err := decodeJSON(r, &wr); err != nil {
				httpError(rw, http.StatusBadRequest, err)
				return
			}
		}
		name := r.PathValue("deployment")
		d.Held(name, wr.Gateway, wr.InFlight)
		w.Wake(name)
		rw.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 8<<20))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	return nil
}

func httpError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "demand/invalid", "message": err.Error()}})
}
