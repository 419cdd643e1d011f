package faults

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
)

// Load sends requests from a few loopback clients, each on its own
// kept-alive connection, paced, until stopped or bounded by count or time.
type Load struct {
	mu sync.Mutex
	// events are the outcomes in the order they finished.
	events []event
	stop   chan struct{}
	done   sync.WaitGroup
}

type event struct {
	at   time.Time // when the answer (or the error) came
	sent time.Time
	code int // 0: transport error
	err  string
}

// StartLoad starts clients goroutines sending POST url with body, each at
// most one request every pace, up to maxRequests in all and for at most
// maxTime.
func StartLoad(ctx context.Context, url string, body []byte, clients int, pace time.Duration, maxRequests int, maxTime time.Duration) *Load {
	return StartLoadWithToken(ctx, url, "", body, clients, pace, maxRequests, maxTime)
}

// StartLoadWithToken is StartLoad with "Authorization: Bearer token" on
// every request (none when token is "").
func StartLoadWithToken(ctx context.Context, url, token string, body []byte, clients int, pace time.Duration, maxRequests int, maxTime time.Duration) *Load {
	l := &Load{stop: make(chan struct{})}
	deadline := time.Now().Add(maxTime)
	var mu sync.Mutex
	left := maxRequests
	take := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if left <= 0 {
			return false
		}
		left--
		return true
	}
	for range clients {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			var rt http.RoundTripper = &http.Transport{MaxIdleConnsPerHost: 1}
			if token != "" {
				rt = bearer{token: token, next: rt}
			}
			c := &http.Client{Timeout: 90 * time.Second, Transport: rt}
			defer c.CloseIdleConnections()
			t := time.NewTicker(pace)
			defer t.Stop()
			for time.Now().Before(deadline) && ctx.Err() == nil && take() {
				sent := time.Now()
				code, out, _, err := harness.Post(ctx, c, url, body)
				ev := event{at: time.Now(), sent: sent, code: code}
				if err != nil {
					ev.code, ev.err = 0, err.Error()
				} else if code != http.StatusOK {
					ev.err = fmt.Sprintf("HTTP %d: %.200s", code, out)
				}
				l.mu.Lock()
				l.events = append(l.events, ev)
				l.mu.Unlock()
				select {
				case <-l.stop:
					return
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	return l
}

// Stop ends the load and waits for the clients' last requests.
func (l *Load) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.done.Wait()
}

// LoadStats sums a window of the load.
type LoadStats struct {
	OK, Failed int
	// Codes counts failures by status; 0 counts transport errors.
	Codes      map[int]int
	FirstError string
	// MaxLatency is the longest time from sending to an answer.
	MaxLatency time.Duration
}

// Stats sums the requests sent in [from, to) (zero times: unbounded).
func (l *Load) Stats(from, to time.Time) LoadStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := LoadStats{Codes: map[int]int{}}
	for _, ev := range l.events {
		if (!from.IsZero() && ev.sent.Before(from)) || (!to.IsZero() && !ev.sent.Before(to)) {
			continue
		}
		s.MaxLatency = max(s.MaxLatency, ev.at.Sub(ev.sent))
		if ev.code == http.StatusOK {
			s.OK++
			continue
		}
		s.Failed++
		s.Codes[ev.code]++
		if s.FirstError == "" {
			s.FirstError = ev.err
		}
	}
	return s
}

// FirstOKAfter returns when the first request sent at or after t was
// answered 200, or the zero time.
func (l *Load) FirstOKAfter(t time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, ev := range l.events {
		if ev.code == http.StatusOK && !ev.sent.Before(t) && (first.IsZero() || ev.at.Before(first)) {
			first = ev.at
		}
	}
	return first
}

// LastFailure returns when the last failed request was answered, or zero.
func (l *Load) LastFailure() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var last time.Time
	for _, ev := range l.events {
		if ev.code != http.StatusOK && ev.at.After(last) {
			last = ev.at
		}
	}
	return last
}

func (s LoadStats) codes() string {
	if s.Failed == 0 {
		return "none"
	}
	var keys []int
	for k := range s.Codes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		name := strconv.Itoa(k)
		if k == 0 {
			name = "transport error"
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", name, s.Codes[k]))
	}
	return strings.Join(parts, ", ")
}

// bearer adds a bearer token to each request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (b bearer) CloseIdleConnections() {
	if c, ok := b.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// recoveryWithin bounds recoveryGoal's wait.
const recoveryWithin = 10 * time.Second

// recoveryGoal measures the time to recover from a fault that ended at end:
// from then, a new client sends the case's inference request to url, each
// on a new connection, every 20 ms, until one answers 200; recovery is the
// time from end to that answer. It returns the goal and the seconds (-1
// when no answer came within recoveryWithin).
func recoveryGoal(ctx context.Context, url string, end time.Time) (harness.Goal, float64) {
	c := &http.Client{Timeout: recoveryWithin, Transport: &http.Transport{DisableKeepAlives: true}}
	defer c.CloseIdleConnections()
	var last string
	for time.Since(end) < recoveryWithin && ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(inferBody)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s := time.Since(end).Seconds()
				return goal("served after the fault", fmt.Sprintf("a new client's request answered 200 within %s of the fault's end", recoveryWithin), s, "s", true,
					fmt.Sprintf("the first 200 came %.3f s after the fault ended", s)), s
			}
			last = "HTTP " + strconv.Itoa(resp.StatusCode)
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return goal("served after the fault", fmt.Sprintf("a new client's request answered 200 within %s of the fault's end", recoveryWithin), -1, "s", false,
		"no 200 within "+recoveryWithin.String()+"; last answer: "+last), -1
}
