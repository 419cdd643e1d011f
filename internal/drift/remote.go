package drift

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// maxProfilesBytes bounds the profile list a gateway reads.
const maxProfilesBytes = 256 << 20

// Remote is a cluster gateway's side of drift monitoring: it polls the
// operator for what to watch (ProfilesPath, with its ETag) into the
// gateway's Monitor, and ships the Monitor's windows to the operator
// (WindowsPath), every Every. The Monitor is fed by the gateway's
// prediction log through a Sink whose missed hook is Wake.
type Remote struct {
	// Gateway names this gateway (its pod name) in its reports.
	Gateway string
	// Base is the operator's URL; HTTP the client that reaches it with
	// the gateway's token.
	Base    string
	HTTP    *http.Client
	Monitor *Monitor
	// Outbox, when set, holds the predictions to ship for label joins.
	Outbox *Outbox
	// Every is the period of polls and reports; default 5s.
	Every time.Duration
	Clock clock.WithTicker
	Log   *slog.Logger

	wakeOnce sync.Once
	wake     chan struct{}
	etag     string // of the last profile list applied; Run owns it
}

func (r *Remote) init() {
	r.wakeOnce.Do(func() { r.wake = make(chan struct{}, 1) })
}

// Wake asks for a poll of the profiles at the next tick, asking the
// operator to look again too; it never blocks.
func (r *Remote) Wake() {
	r.init()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run polls and reports until ctx ends. Failures are logged once until
// the operator answers again.
func (r *Remote) Run(ctx context.Context) error {
	r.init()
	clk := r.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	every := r.Every
	if every <= 0 {
		every = 5 * time.Second
	}
	log := r.Log
	if log == nil {
		log = slog.Default()
	}
	t := clk.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		missed := false
		select {
		case <-r.wake:
			missed = true
		default:
		}
		err := r.Poll(ctx, missed)
		if err == nil {
			err = r.Ship(ctx)
		}
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			log.Warn("drift: cannot reach the operator; this gateway's drift windows are not in the cluster's reports", "err", err)
			failing = true
		case err == nil && failing:
			log.Info("drift: the operator answers again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
	}
}

// Poll reads what to watch, when it changed, into the Monitor; missed
// asks the operator to look again soon.
func (r *Remote) Poll(ctx context.Context, missed bool) error {
	url := strings.TrimRight(r.Base, "/") + ProfilesPath
	if missed {
		url += "?sync=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if r.etag != "" {
		req.Header.Set("If-None-Match", r.etag)
	}
	resp, err := r.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("operator at %s: %w", r.Base, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil
	case http.StatusOK:
	default:
		return answerError(r.Base, resp)
	}
	var list ProfileList
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxProfilesBytes)).Decode(&list); err != nil {
		return fmt.Errorf("operator at %s: undecodable drift profiles: %w", r.Base, err)
	}
	for _, e := range list.Items {
		if e.Profile == nil {
			return fmt.Errorf("operator at %s: drift profile of %s %s is missing", r.Base, e.Deployment, e.Version)
		}
		if err := e.Profile.Validate(); err != nil {
			return fmt.Errorf("operator at %s: drift profile of %s %s: %w", r.Base, e.Deployment, e.Version, err)
		}
	}
	r.Monitor.Set(list.Items)
	r.etag = resp.Header.Get("ETag")
	return nil
}

// Ship sends the Monitor's windows to the operator, even when there is
// none (an empty report replaces the gateway's previous one), with the
// Outbox's predictions, which leave it once the operator took them.
func (r *Remote) Ship(ctx context.Context) error {
	rep := WindowsReport{Gateway: r.Gateway, Windows: nonNilWindows(r.Monitor.Snapshots())}
	var shipped uint64
	if r.Outbox != nil {
		rep.Predictions, shipped = r.Outbox.peek(maxShippedPredictions)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(r.Base, "/")+WindowsPath, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("operator at %s: %w", r.Base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return answerError(r.Base, resp)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if r.Outbox != nil {
		r.Outbox.ack(shipped)
	}
	return nil
}

func nonNilWindows(ws []WindowReport) []WindowReport {
	if ws == nil {
		return []WindowReport{}
	}
	return ws
}

func answerError(base string, resp *http.Response) error {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Errorf("operator at %s answered %s: %s", base, resp.Status, bytes.TrimSpace(msg))
}
