package harness

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestOpenLoopSchedule(t *testing.T) {
	tests := []struct {
		elapsed time.Duration
		rate    float64
		limit   int
		want    int
	}{
		{elapsed: -time.Millisecond, rate: 100, limit: 10, want: 0},
		{elapsed: 0, rate: 100, limit: 10, want: 1},
		{elapsed: 9 * time.Millisecond, rate: 100, limit: 10, want: 1},
		{elapsed: 10 * time.Millisecond, rate: 100, limit: 10, want: 2},
		{elapsed: 45 * time.Millisecond, rate: 100, limit: 10, want: 5},
		{elapsed: time.Second, rate: 100, limit: 10, want: 10},
		{elapsed: 1500 * time.Millisecond, rate: 2, limit: 100, want: 4},
	}
	for _, tt := range tests {
		if got := openLoopSchedule(tt.elapsed, tt.rate, tt.limit); got != tt.want {
			t.Errorf("openLoopSchedule(%v, %g, %d) = %d, want %d", tt.elapsed, tt.rate, tt.limit, got, tt.want)
		}
	}
}

// TestOpenLoop: the sender keeps its rate whatever the server takes, and
// stops at each bound: the request count, the duration, and the answers
// awaited at once (skipping, not queueing, beyond it).
func TestOpenLoop(t *testing.T) {
	var served atomic.Int64
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		if r.Header.Get("X-Slow") != "" {
			<-block
		}
		if r.Header.Get("X-Refuse") != "" {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Write([]byte("{}"))
	}))
	defer srv.Close()
	tests := []struct {
		name        string
		run         OpenLoopRun
		wantSent    int
		wantSkipped int
		wantCodes   map[int]int
	}{
		{name: "count bound", run: OpenLoopRun{Rate: 1000, Duration: 10 * time.Second, MaxRequests: 20},
			wantSent: 20, wantCodes: map[int]int{200: 20}},
		{name: "refused", run: OpenLoopRun{Rate: 1000, Duration: 10 * time.Second, MaxRequests: 5, Header: map[string]string{"X-Refuse": "1"}},
			wantSent: 5, wantCodes: map[int]int{429: 5}},
		{name: "outstanding bound", run: OpenLoopRun{Rate: 1000, Duration: 10 * time.Second, MaxRequests: 30, MaxOutstanding: 10, Header: map[string]string{"X-Slow": "1"}},
			wantSent: 10, wantSkipped: 20, wantCodes: map[int]int{200: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run.URL = srv.URL
			if tt.run.Header["X-Slow"] != "" {
				// Answer the held requests once the sender is done.
				go func() {
					for served.Load() < int64(tt.wantSent) {
						time.Sleep(time.Millisecond)
					}
					time.Sleep(100 * time.Millisecond)
					close(block)
				}()
			}
			res := OpenLoop(t.Context(), tt.run)
			if res.Sent != tt.wantSent || res.Skipped != tt.wantSkipped {
				t.Errorf("sent %d, skipped %d; want %d, %d", res.Sent, res.Skipped, tt.wantSent, tt.wantSkipped)
			}
			for code, n := range tt.wantCodes {
				if res.Codes[code] != n {
					t.Errorf("codes %s; want %d of %d", res.CodesText(), n, code)
				}
			}
			if len(res.Latencies) != res.OK() {
				t.Errorf("%d latencies for %d answers of 200", len(res.Latencies), res.OK())
			}
		})
	}

	// A closed loop sends exactly its count, on its connections.
	cl := ClosedLoop(t.Context(), ClosedLoopRun{URL: srv.URL, Conns: 4, Requests: 50, Duration: 10 * time.Second})
	if cl.Sent != 50 || cl.OK() != 50 || cl.RPS() <= 0 {
		t.Errorf("closed loop: sent %d, %s, %.0f req/s; want 50 answers of 200", cl.Sent, cl.CodesText(), cl.RPS())
	}

	// The duration bounds the sending: 50 req/s for 200 ms sends about 10
	// (fewer on a machine too busy to wake the sender in time, never more).
	start := time.Now()
	res := OpenLoop(t.Context(), OpenLoopRun{URL: srv.URL, Rate: 50, Duration: 200 * time.Millisecond})
	if took := time.Since(start); res.Sent < 3 || res.Sent > 10 || took > 2*time.Second {
		t.Errorf("50 req/s for 200ms: sent %d in %v; want about 10", res.Sent, took)
	}
}
