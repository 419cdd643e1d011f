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
	"time"

	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/stats"
	"k8s.io/utils/clock"
)

// Client calls the operator's demand API.
type Client struct {
	base string
	http *http.Client
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

// Report sends a demand report.
func (c *Client) Report(ctx context.Context, r operator.DemandReport) error {
	return c.post(ctx, operator.DemandPath, r)
}

// Wake tells the operator that w.InFlight requests wait for a deployment
// with no ready replica.
func (c *Client) Wake(ctx context.Context, deployment string, w operator.WakeRequest) error {
	return c.post(ctx, operator.WakePath+url.PathEscape(deployment), w)
}

func (c *Client) post(ctx context.Context, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("operator at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("operator at %s answered %s: %s", c.base, resp.Status, bytes.TrimSpace(msg))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// RecorderSource lists the demand recorders of the routed deployments;
// *Routes is one.
type RecorderSource interface {
	Recorders() map[string]*stats.Recorder
}

// Reporter sends the gateway's demand to the operator every period.
type Reporter struct {
	Gateway string
	Source  RecorderSource
	Client  *Client
	// Every is the period; default 1s.
	Every time.Duration
	// Clock; default real.
	Clock clock.WithTicker
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Run reports until ctx ends. A failed report is logged and dropped: the
// next one carries fresh numbers.
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
		err := r.Client.Report(rctx, rep)
		cancel()
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
// any demand.
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
	return rep
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
