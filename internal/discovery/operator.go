package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/reqstats"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/ebb-ml/ebb/internal/traffic"
	"k8s.io/utils/clock"
)

// Client calls the operator's demand API.
type Client struct {
	base  string
	http  *http.Client
	token string
}

// NewClient returns a Client for the operator at base
// ("http://ebb-operator.ebb-system:8090"); hc defaults to a client with a
// 5s timeout.
func NewClient(base string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	return &Client{base: strings.TrimRight(base, "/"), http: hc}
}

// WithToken returns a copy of c that sends token ("Authorization: Bearer
// TOKEN", a token with scope gateway) with every call, as the operator
// requires unless its auth is off.
func (c *Client) WithToken(token string) *Client {
	cc := *c
	cc.token = token
	return &cc
}

// Report sends a demand report and returns the operator's answer (a
// zero one from an operator that answers none).
func (c *Client) Report(ctx context.Context, r operator.DemandReport) (operator.DemandAnswer, error) {
	var a operator.DemandAnswer
	return a, c.post(ctx, operator.DemandPath, r, &a)
}

// Wake tells the operator that w.InFlight requests wait for a deployment
// with no ready replica.
func (c *Client) Wake(ctx context.Context, deployment string, w operator.WakeRequest) error {
	return c.post(ctx, operator.WakePath+url.PathEscape(deployment), w, nil)
}

// post sends body as JSON to path and decodes a JSON answer into out,
// when out is set and the answer has a body.
func (c *Client) post(ctx context.Context, path string, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("operator at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("operator at %s answered %s: %s", c.base, resp.Status, bytes.TrimSpace(msg))
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil && err != io.EOF {
			return fmt.Errorf("operator at %s: undecodable answer: %w", c.base, err)
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// ListLimitsIfChanged reads the tenant limits from the operator
// (operator.LimitsPath): every limit and the list's ETag, or changed
// false when etag still names the list. It is a limit.Lister.
func (c *Client) ListLimitsIfChanged(ctx context.Context, etag string) ([]serving.Limit, string, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+operator.LimitsPath, nil)
	if err != nil {
		return nil, "", false, err
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, "", false, fmt.Errorf("operator at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, etag, false, nil
	case http.StatusOK:
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, "", false, fmt.Errorf("operator at %s answered %s: %s", c.base, resp.Status, bytes.TrimSpace(msg))
	}
	var list struct {
		Items []serving.Limit `json:"items"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&list); err != nil {
		return nil, "", false, fmt.Errorf("operator at %s: undecodable limits: %w", c.base, err)
	}
	return list.Items, resp.Header.Get("ETag"), true, nil
}

// RecorderSource lists the demand recorders of the routed deployments;
// *Routes is one.
type RecorderSource interface {
	Recorders() map[string]*stats.Recorder
}

// MeterSource lists the request meters of the routed traffic splits (their
// primaries and tracks), by route key; *Routes is one. A Reporter whose
// Source is one reports them.
type MeterSource interface {
	Meters() map[string]*traffic.Meter
}

// ShadowSource lists what the gateway compared of the shadows of the
// routed deployments (spec.shadow), by deployment; *Routes is one. A
// Reporter whose Source is one reports them, whole, with every report.
type ShadowSource interface {
	Shadows() map[string]operator.ShadowReport
}

// Defaults of Reporter.
const (
	// DefaultMeterBacklog bounds how far back a report's meters reach
	// after reports failed. A second of a meter is a few hundred bytes of
	// JSON, at most about 5 KiB (every latency bin used): 120 of them fit
	// the operator's limit on a report (8 MiB) for a dozen tracks.
	DefaultMeterBacklog = 2 * time.Minute
	// meterSettle is how long after a meter's bucket ends it is
	// reported: a request that ended in it may still be observing.
	meterSettle = 250 * time.Millisecond
)

// Reporter sends the gateway's demand to the operator every period, and
// with it, when Source is a MeterSource, the buckets of each meter that
// completed since the last report the operator answered: a bucket is sent
// until a report that carried it succeeds (the operator merges each
// once), but never one older than MeterBacklog; and, when Source is a
// ShadowSource, the tally of each shadow, whole (the operator keeps each
// gateway's latest).
type Reporter struct {
	Gateway string
	Source  RecorderSource
	Client  *Client
	// Every is the period; default 1s.
	Every time.Duration
	// MeterBacklog bounds what a report resends of meters after failed
	// reports; default DefaultMeterBacklog.
	MeterBacklog time.Duration
	// Clock; default real.
	Clock clock.WithTicker
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Requests, when set, is read at each report for the gateway's
	// cumulative request counters (reqstats.Gathered over its own
	// metrics), which the report carries (requests.go).
	Requests reqstats.Source

	// reqs is what the operator holds of the Requests counters.
	reqs requestsSent

	// mu guards acked and pending.
	mu sync.Mutex
	// acked maps a meter's key to where its next export starts: after
	// the buckets of the last report the operator answered.
	acked map[string]time.Time
	// pending is what acked becomes once the latest report is answered.
	pending map[string]time.Time
	// gateways is how many gateways the operator last counted (Gateways).
	gateways atomic.Int32
}

// Gateways returns how many gateways the operator counted in its answer
// to the latest report, at least 1: this gateway's share of each tenant
// limit is 1/Gateways.
func (r *Reporter) Gateways() int { return max(int(r.gateways.Load()), 1) }

// Run reports until ctx ends. A failed report is logged and dropped: the
// next one carries fresh numbers, and the meters' buckets it carried.
func (r *Reporter) Run(ctx context.Context) error {
	every := cmp0(r.Every, time.Second)
	clk := r.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	t := clk.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		rep := r.Report(clk.Now())
		rctx, cancel := context.WithTimeout(ctx, every*3)
		ans, err := r.Client.Report(rctx, rep)
		cancel()
		if err == nil {
			r.Acknowledge()
			r.reqs.answered(ans.WantRequests)
			r.gateways.Store(int32(ans.Gateways))
		}
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			log.Warn("cannot report demand to the operator; the autoscaler does not see this gateway's load", "err", err)
			failing = true
		case err == nil && failing:
			log.Info("demand reports reach the operator again")
			failing = false
		}
	}
}

// Report samples every recorder at now and returns the deployments with
// any demand, and the meters' buckets not acknowledged yet (see
// Acknowledge) that completed before now.
func (r *Reporter) Report(now time.Time) operator.DemandReport {
	rep := operator.DemandReport{Gateway: r.Gateway, Deployments: map[string]operator.GatewayDemand{}}
	for name, rec := range r.Source.Recorders() {
		s := rec.Sample(now)
		n := rec.InFlight()
		if s.Requests == 0 && s.Concurrency == 0 && n == 0 {
			continue
		}
		rep.Deployments[name] = operator.GatewayDemand{InFlight: n, Concurrency: s.Concurrency, Requests: s.Requests}
	}
	if ms, ok := r.Source.(MeterSource); ok {
		rep.Meters = r.meters(ms.Meters(), now)
	}
	if ss, ok := r.Source.(ShadowSource); ok {
		rep.Shadows = ss.Shadows()
	}
	if r.Requests != nil {
		rep.Requests = r.reqs.report(r.Requests, now)
	}
	return rep
}

// meters exports the buckets of meters that completed by now (less
// meterSettle) since their last acknowledged report, or at most
// MeterBacklog ago; nil when there is none.
func (r *Reporter) meters(meters map[string]*traffic.Meter, now time.Time) map[string][]traffic.Bucket {
	until := now.Add(-meterSettle)
	oldest := until.Add(-cmp0(r.MeterBacklog, DefaultMeterBacklog))
	r.mu.Lock()
	defer r.mu.Unlock()
	for key := range r.acked {
		if meters[key] == nil {
			delete(r.acked, key) // the split ended
		}
	}
	r.pending = make(map[string]time.Time, len(meters))
	var out map[string][]traffic.Bucket
	for key, m := range meters {
		since, ok := r.acked[key]
		if !ok || since.Before(oldest) {
			since = oldest
		}
		bs, next := m.Export(since, until)
		r.pending[key] = next
		if len(bs) == 0 {
			continue
		}
		if out == nil {
			out = map[string][]traffic.Bucket{}
		}
		out[key] = bs
	}
	return out
}

// Acknowledge records that the operator received the latest Report: the
// meters' buckets it carried are not sent again, nor the request counters
// that have not moved since.
func (r *Reporter) Acknowledge() {
	r.reqs.acknowledge()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.acked == nil {
		r.acked = map[string]time.Time{}
	}
	for key, next := range r.pending {
		r.acked[key] = next
	}
	r.pending = nil
}

func cmp0(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Waker wakes cold deployments through the operator (an activator.Waker).
// Calls for one deployment are coalesced: while a wake-up is on its way,
// further calls send one more after it, not one each.
type Waker struct {
	gateway string
	client  *Client
	source  RecorderSource
	log     *slog.Logger

	// mu guards busy.
	mu   sync.Mutex
	busy map[string]bool // deployment → another wake-up is wanted after the current one
}

// NewWaker returns a Waker that reports the requests held for a deployment
// (from source) with each wake-up.
func NewWaker(gateway string, client *Client, source RecorderSource, log *slog.Logger) *Waker {
	if log == nil {
		log = slog.Default()
	}
	return &Waker{gateway: gateway, client: client, source: source, log: log, busy: map[string]bool{}}
}

// Wake sends a wake-up in the background; it never blocks.
func (w *Waker) Wake(deployment string) {
	w.mu.Lock()
	again, running := w.busy[deployment]
	if running {
		if !again {
			w.busy[deployment] = true
		}
		w.mu.Unlock()
		return
	}
	w.busy[deployment] = false
	w.mu.Unlock()
	go w.send(deployment)
}

func (w *Waker) send(deployment string) {
	for {
		n := 1
		if rec := w.source.Recorders()[deployment]; rec != nil {
			n = max(rec.InFlight(), 1)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := w.client.Wake(ctx, deployment, operator.WakeRequest{Gateway: w.gateway, InFlight: n})
		cancel()
		if err != nil {
			w.log.Warn("cannot wake deployment through the operator; the next demand report will", "deployment", deployment, "err", err)
		}
		w.mu.Lock()
		if !w.busy[deployment] {
			delete(w.busy, deployment)
			w.mu.Unlock()
			return
		}
		w.busy[deployment] = false
		w.mu.Unlock()
	}
}
