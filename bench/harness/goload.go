package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"
)

// OpenLoopRun says what OpenLoop sends: POSTs of Body to URL at Rate per
// second, evenly spaced, whatever the answers take (an open loop: a slow
// server does not slow the sender down, as it does a closed loop's fixed
// connections). It is bounded three ways: by Duration, by MaxRequests, and
// by MaxOutstanding answers awaited at once, beyond which a send is skipped
// (and counted) rather than queued in the client.
type OpenLoopRun struct {
	URL  string
	Body []byte
	// Header is added to every request (Content-Type is application/json).
	Header map[string]string
	// Rate is the requests per second to send; at least 1.
	Rate float64
	// Duration bounds the sending; the answers awaited when it ends are
	// still waited for (each bounded by Timeout).
	Duration time.Duration
	// MaxRequests bounds the requests sent; 0: Rate × Duration.
	MaxRequests int
	// MaxOutstanding bounds the answers awaited at once; 0: 1000.
	MaxOutstanding int
	// Timeout bounds one request; 0: 30s.
	Timeout time.Duration
}

// OpenLoopResult is what OpenLoop saw.
type OpenLoopResult struct {
	// Sent counts the requests sent; Skipped those not sent because
	// MaxOutstanding answers were awaited.
	Sent, Skipped int
	// Codes counts the answers by HTTP status; 0 counts transport errors
	// and timeouts.
	Codes map[int]int
	// Latencies are those of the 200 answers, from sending to the last
	// byte of the answer.
	Latencies []time.Duration
	// Elapsed is the time from the first send to the last answer.
	Elapsed time.Duration
	// FirstError is the first failure seen, for the report.
	FirstError string
}

// record counts one answer: its status (0 with err), and its latency d
// when it is 200.
func (r *OpenLoopResult) record(code int, d time.Duration, err error) {
	switch {
	case err != nil:
		r.Codes[0]++
		if r.FirstError == "" {
			r.FirstError = err.Error()
		}
	case code == http.StatusOK:
		r.Codes[code]++
		r.Latencies = append(r.Latencies, d)
	default:
		r.Codes[code]++
		if r.FirstError == "" {
			r.FirstError = fmt.Sprintf("HTTP %d", code)
		}
	}
}

// OK counts the 200 answers.
func (r OpenLoopResult) OK() int { return r.Codes[http.StatusOK] }

// Failed counts the requests sent that did not answer 200.
func (r OpenLoopResult) Failed() int { return r.Sent - r.OK() }

// CodesText lists the answers by status, "200: 95, 429: 5", transport
// errors as "error".
func (r OpenLoopResult) CodesText() string {
	var b bytes.Buffer
	for _, code := range slices.Sorted(maps.Keys(r.Codes)) {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		if code == 0 {
			fmt.Fprintf(&b, "error: %d", r.Codes[code])
		} else {
			fmt.Fprintf(&b, "%d: %d", code, r.Codes[code])
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// openLoopSchedule returns how many requests are due by elapsed at rate
// per second, at most limit: request i is due at i/rate.
func openLoopSchedule(elapsed time.Duration, rate float64, limit int) int {
	if elapsed < 0 {
		return 0
	}
	return min(int(elapsed.Seconds()*rate)+1, limit)
}

// OpenLoop runs r and returns what it saw; it returns when every request
// sent has answered or timed out, or ctx ends. Each request runs on its
// own goroutine with a client of its own (kept-alive connections, as many
// as MaxOutstanding), so one tenant's flood shares no connection with
// another's load.
func OpenLoop(ctx context.Context, r OpenLoopRun) OpenLoopResult {
	rate := max(r.Rate, 1)
	limit := r.MaxRequests
	if limit <= 0 {
		limit = max(1, int(rate*r.Duration.Seconds()))
	}
	outstanding := r.MaxOutstanding
	if outstanding <= 0 {
		outstanding = 1000
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	tr := &http.Transport{MaxIdleConns: outstanding, MaxIdleConnsPerHost: outstanding, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: timeout}

	res := OpenLoopResult{Codes: map[int]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, outstanding)
	send := func() {
		defer wg.Done()
		defer func() { <-slots }()
		code, d, err := openLoopPost(ctx, c, r)
		mu.Lock()
		res.record(code, d, err)
		mu.Unlock()
	}
	start := time.Now()
	issued := 0
	for issued < limit && ctx.Err() == nil {
		elapsed := time.Since(start)
		if elapsed >= r.Duration {
			break
		}
		due := openLoopSchedule(elapsed, rate, limit)
		for ; issued < due; issued++ {
			select {
			case slots <- struct{}{}:
				res.Sent++
				wg.Add(1)
				go send()
			default:
				res.Skipped++
			}
		}
		if issued >= limit {
			break
		}
		// Sleep until the next request is due; a late wake-up sends the
		// ones that fell due meanwhile at once, so the rate holds on
		// average.
		next := time.Duration(float64(issued) / rate * float64(time.Second))
		if d := next - time.Since(start); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}

// openLoopPost sends one request of r and returns its status and time.
func openLoopPost(ctx context.Context, c *http.Client, r OpenLoopRun) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, time.Since(start), err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start), err
}

// ClosedLoopRun says what ClosedLoop sends: POSTs of Body to URL on Conns
// kept-alive connections, each sending its next request when the last
// answers, until Requests were sent or Duration passed.
type ClosedLoopRun struct {
	URL  string
	Body []byte
	// Header is added to every request (Content-Type is application/json).
	Header   map[string]string
	Conns    int
	Requests int
	Duration time.Duration
	// Timeout bounds one request; 0: 30s.
	Timeout time.Duration
}

// ClosedLoop runs r and returns what it saw (Skipped is 0).
func ClosedLoop(ctx context.Context, r ClosedLoopRun) OpenLoopResult {
	conns := max(r.Conns, 1)
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: timeout}
	req := OpenLoopRun{URL: r.URL, Body: r.Body, Header: r.Header}
	res := OpenLoopResult{Codes: map[int]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(r.Duration)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				mu.Lock()
				if res.Sent >= r.Requests {
					mu.Unlock()
					return
				}
				res.Sent++
				mu.Unlock()
				code, d, err := openLoopPost(ctx, c, req)
				mu.Lock()
				res.record(code, d, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}

// RPS is the 200 answers per second of Elapsed.
func (r OpenLoopResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK()) / r.Elapsed.Seconds()
}
