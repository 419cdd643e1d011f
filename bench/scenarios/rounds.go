package scenarios

import (
	"context"
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
)

// target is one server reached over HTTP.
type target struct {
	name string
	url  string // full infer URL
}

// loadPlan says how to load each target: one warm-up, then rounds that
// each run every target in turn (a wrk throughput run at Conns
// connections), then an interleaved latency run at one request at a time.
type loadPlan struct {
	Body   []byte
	Conns  int
	Warmup time.Duration
	Tput   time.Duration
	Rounds int
	// LatencyN and LatencyTime bound the interleaved latency run: requests
	// per target and time in all.
	LatencyN    int
	LatencyTime time.Duration
	AfterRun    func(t target) // called after each throughput run, e.g. to sample memory
}

// measured holds one target's results.
type measured struct {
	tput []harness.WrkResult
	// lat holds the latencies of the interleaved run; latFailed counts its
	// failed requests.
	lat       []time.Duration
	latFailed int
}

// latMs returns a quantile of the interleaved latencies in milliseconds.
func (m *measured) latMs(q float64) float64 { return harness.Ms(harness.Quantile(m.lat, q)) }

func (m *measured) rps() float64 {
	xs := make([]float64, len(m.tput))
	for i, r := range m.tput {
		xs[i] = r.RPS()
	}
	return harness.Median(xs)
}

// median of a field over the runs, in milliseconds (wrk reports µs).
func medianMs(runs []harness.WrkResult, f func(harness.WrkResult) float64) float64 {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r) / 1000
	}
	return harness.Median(xs)
}

func p50(r harness.WrkResult) float64 { return r.P50Us }
func p99(r harness.WrkResult) float64 { return r.P99Us }

// errorsOf counts failed and all requests of a target, wrk runs and the
// latency run together.
func (m *measured) errorsOf() (errs, total int64) {
	for _, r := range m.tput {
		errs += r.Errors()
		total += r.Requests
	}
	errs += int64(m.latFailed)
	total += int64(len(m.lat) + m.latFailed)
	return errs, total
}

// runRounds measures every target by plan, alternating targets within each
// round, and rotating which goes first, so that drift on the machine falls
// on all of them alike.
func runRounds(ctx context.Context, env *harness.Env, targets []target, plan loadPlan) (map[string]*measured, error) {
	out := map[string]*measured{}
	for _, t := range targets {
		out[t.name] = &measured{}
		if plan.Warmup > 0 {
			if _, err := env.Wrk(ctx, harness.WrkRun{URL: t.url, Body: plan.Body, Connections: plan.Conns, Duration: plan.Warmup}); err != nil {
				return nil, fmt.Errorf("warm-up of %s: %w", t.name, err)
			}
		}
	}
	for round := 1; round <= plan.Rounds; round++ {
		// Each round starts one target further on, so that no target
		// always follows the same one.
		for k := range targets {
			t := targets[(round-1+k)%len(targets)]
			r, err := env.Wrk(ctx, harness.WrkRun{URL: t.url, Body: plan.Body, Connections: plan.Conns, Duration: plan.Tput})
			if err != nil {
				return nil, fmt.Errorf("%s round %d: %w", t.name, round, err)
			}
			if plan.AfterRun != nil {
				plan.AfterRun(t)
			}
			env.Logf("round %d %-22s %8.0f req/s (c=%d, p50 %.3f ms, p99 %.3f ms, %d errors)",
				round, t.name, r.RPS(), plan.Conns, r.P50Us/1000, r.P99Us/1000, r.Errors())
			out[t.name].tput = append(out[t.name].tput, r)
		}
	}
	urls := make([]string, len(targets))
	for i, t := range targets {
		urls[i] = t.url
	}
	lat, failed, err := harness.Interleaved(ctx, urls, plan.Body, plan.LatencyN, plan.LatencyTime)
	if err != nil {
		return nil, err
	}
	for i, t := range targets {
		m := out[t.name]
		m.lat, m.latFailed = lat[i], failed[i]
		env.Logf("latency %-22s %d requests: p50 %.3f ms, p99 %.3f ms, %d failed", t.name, len(m.lat), m.latMs(.5), m.latMs(.99), m.latFailed)
	}
	return out, nil
}

// rawRows lists every throughput run of every target.
func rawRows(targets []target, ms map[string]*measured) [][]string {
	var rows [][]string
	for _, t := range targets {
		for i, r := range ms[t.name].tput {
			rows = append(rows, []string{
				t.name, fmt.Sprint(i + 1),
				harness.F(r.RPS()), fmt.Sprint(r.Requests), harness.F(r.P50Us / 1000), harness.F(r.P99Us / 1000), fmt.Sprint(r.Errors()),
			})
		}
	}
	return rows
}

func rawHeader(conns int) []string {
	return []string{"Target", "Round", "req/s", "requests", fmt.Sprintf("p50 ms (c=%d)", conns), fmt.Sprintf("p99 ms (c=%d)", conns), "errors"}
}

// latencyNote describes the interleaved latency run.
func latencyNote(plan loadPlan, targets []target, ms map[string]*measured) string {
	n := 0
	for _, t := range targets {
		n = max(n, len(ms[t.name].lat))
	}
	return fmt.Sprintf("a Go client sent up to %d requests to each target (%d here), visiting the targets in turn on one kept-alive connection each, "+
		"from one goroutine that writes each request's prebuilt bytes and reads the answer in place (not net/http's Transport, whose handoffs between goroutines add scheduler wake-ups and their jitter to every sample), "+
		"so that disturbances on the machine fall on all of them alike; the time runs from sending the request to the last byte of the answer and includes the client's own cost, the same for every target.",
		plan.LatencyN, n)
}
