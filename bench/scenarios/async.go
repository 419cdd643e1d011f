package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/gateway"
)

// Async compares a deployment's synchronous throughput with its async
// throughput (Prefer: respond-async, then fetching the result with
// Prefer: wait), with the queue in ebb's SQLite store and in NATS JetStream (a real
// nats-server, bench/cmd/ebbnats, pinned beside ebb). The deployment is the
// echo engine burning asyncWorkMs of CPU per prediction, one replica of
// one CPU: a small model. The goal: async ≥ asyncGoal× sync req/s,
// for each store.
type Async struct{}

// Name implements harness.Scenario.
func (Async) Name() string { return "async" }

// Title implements harness.Scenario.
func (Async) Title() string { return "14. Async inference throughput (SQLite, NATS JetStream)" }

const (
	asyncWorkMs = 1
	asyncGoal   = 0.8
	asyncConns  = 16
	// asyncPollers poll results in submission order; asyncPollDelay is how
	// long one waits before asking again about a pending request.
	asyncPollers   = 4
	asyncPollDelay = 10 * time.Millisecond
	// asyncWait is the Prefer header of a poll: wait up to 5 s for the
	// result.
	asyncWait = "wait=5"
	asyncDep  = "async"
	// asyncNoop is a deployment of the echo engine doing no work: its
	// async throughput is the queue's own ceiling on these CPUs.
	asyncNoop   = "async-noop"
	asyncTenant = "bench"
)

// asyncBody is an infer request whose data names i, so that its answer
// shows which request it answers.
func asyncBody(i int) []byte {
	return fmt.Appendf(nil, `{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[%d,0.5]}]}`, i)
}

// asyncAnswers reports whether an echo answer carries request i's data.
func asyncAnswers(body []byte, i int) bool {
	out, err := outputsOf(body)
	return err == nil && len(out) == 2 && out[0] == float64(i) && out[1] == 0.5
}

// asyncResult is one async run: n requests submitted and their results
// fetched.
type asyncResult struct {
	n                  int
	submitted, elapsed time.Duration // until the last 202; until the last result
	polls              int           // GETs answered 202 (still pending)
	failed             int
	firstError         string
}

func (r asyncResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.n-r.failed) / r.elapsed.Seconds()
}

// asyncRun submits n async requests to dep at base on asyncConns connections and
// fetches every result, polling in submission order, and returns the time
// from the first submission to the last result. Every result must be the
// echo of its request. It is bounded by maxTime.
func asyncRun(ctx context.Context, base, dep string, n int, maxTime time.Duration) asyncResult {
	ctx, cancel := context.WithTimeout(ctx, maxTime)
	defer cancel()
	tr := &http.Transport{MaxIdleConns: asyncConns + asyncPollers, MaxIdleConnsPerHost: asyncConns + asyncPollers}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	res := asyncResult{n: n}
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		res.failed++
		if res.firstError == "" {
			res.firstError = err.Error()
		}
	}
	type submitted struct {
		i  int
		id string
	}
	ids := make(chan submitted, n)
	var next atomic.Int64
	var subWG, pollWG sync.WaitGroup
	start := time.Now()
	for range asyncConns {
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				id, err := asyncSubmit(ctx, c, base, dep, i)
				if err != nil {
					fail(err)
					continue
				}
				ids <- submitted{i, id}
			}
		}()
	}
	for range asyncPollers {
		pollWG.Add(1)
		go func() {
			defer pollWG.Done()
			for s := range ids {
				polls, err := asyncFetch(ctx, c, base, s.id, s.i)
				mu.Lock()
				res.polls += polls
				mu.Unlock()
				if err != nil {
					fail(err)
				}
			}
		}()
	}
	subWG.Wait()
	res.submitted = time.Since(start)
	close(ids)
	pollWG.Wait()
	res.elapsed = time.Since(start)
	return res
}

// asyncSubmit posts request i to dep with Prefer: respond-async and returns its id.
func asyncSubmit(ctx context.Context, c *http.Client, base, dep string, i int) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v2/models/"+dep+"/infer", bytes.NewReader(asyncBody(i)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "respond-async")
	req.Header.Set(gateway.DefaultTenantHeader, asyncTenant)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var st struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(b, &st) != nil || st.ID == "" {
		return "", fmt.Errorf("submit: HTTP %d: %.300s", resp.StatusCode, b)
	}
	return st.ID, nil
}

// asyncFetch polls id until it has a result, which must be the echo of
// request i, and returns how many polls found it pending.
func asyncFetch(ctx context.Context, c *http.Client, base, id string, i int) (int, error) {
	for polls := 0; ; polls++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/async/"+id, nil)
		if err != nil {
			return polls, err
		}
		req.Header.Set(gateway.DefaultTenantHeader, asyncTenant)
		// The gateway answers when the result is stored, or with 202
		// after the wait (RFC 7240), rather than the client polling.
		req.Header.Set("Prefer", asyncWait)
		resp, err := c.Do(req)
		if err != nil {
			return polls, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusAccepted:
		case resp.StatusCode != http.StatusOK:
			return polls, fmt.Errorf("result of %s: HTTP %d: %.300s", id, resp.StatusCode, b)
		case resp.Header.Get(gateway.ResultStatusHeader) != "200" || !asyncAnswers(b, i):
			return polls, fmt.Errorf("result of %s (request %d): status %s: %.300s", id, i, resp.Header.Get(gateway.ResultStatusHeader), b)
		default:
			return polls, nil
		}
		select {
		case <-ctx.Done():
			return polls, ctx.Err()
		case <-time.After(asyncPollDelay):
		}
	}
}

// asyncSync sends n requests of the async run's size synchronously, closed
// loop on asyncConns connections (Run checks one answer's data first).
func asyncSync(ctx context.Context, base, dep string, n int, maxTime time.Duration) harness.OpenLoopResult {
	return harness.ClosedLoop(ctx, harness.ClosedLoopRun{URL: base + "/v2/models/" + dep + "/infer", Body: asyncBody(7),
		Header: map[string]string{gateway.DefaultTenantHeader: asyncTenant}, Conns: asyncConns, Requests: n, Duration: maxTime})
}

// startNATS builds and starts bench/cmd/ebbnats with JetStream in the
// work directory, pinned like the servers, and returns its client URL.
func startNATS(ctx context.Context, env *harness.Env) (string, error) {
	bin := filepath.Join(env.Work, "ebbnats")
	if err := harness.BuildGo(ctx, env.Root, "./bench/cmd/ebbnats", bin, env.Out); err != nil {
		return "", err
	}
	ports := make([]int, 2)
	for i := range ports {
		p, err := harness.FreePort()
		if err != nil {
			return "", err
		}
		ports[i] = p
	}
	addr, monitor := "127.0.0.1:"+strconv.Itoa(ports[0]), "127.0.0.1:"+strconv.Itoa(ports[1])
	p, err := env.Start(harness.StartOptions{Name: "nats-server", Dir: env.Work}, bin, "-addr", addr, "-monitor", monitor, "-store", filepath.Join(env.Work, "jetstream"))
	if err != nil {
		return "", err
	}
	if err := harness.WaitHTTP(ctx, p, "http://"+monitor+"/healthz?js-enabled-only=true", 30*time.Second); err != nil {
		return "", err
	}
	return "nats://" + addr, nil
}

// asyncStore is one queue store measured.
type asyncStore struct {
	name  string
	flags []string
}

// Run implements harness.Scenario.
func (Async) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	model, err := echoWorkModel(env.Work, "echo-async.json", asyncWorkMs)
	if err != nil {
		return res, err
	}
	natsURL, err := startNATS(ctx, env)
	if err != nil {
		return res, fmt.Errorf("nats-server: %w", err)
	}
	stores := []asyncStore{
		{name: "SQLite", flags: nil},
		{name: "NATS JetStream", flags: []string{"--async-store=" + natsURL}},
	}
	n := harness.Pick(env, 3000, 1000)
	rounds := harness.Pick(env, 3, 1)
	maxTime := harness.Pick(env, 90*time.Second, 45*time.Second)
	res.Figures = map[string]float64{"requests": float64(n), "workMs": asyncWorkMs}
	rows, raw, ceiling := [][]string{}, [][]string{}, [][]string{}
	for si, st := range stores {
		key := []string{"sqlite", "nats"}[si]
		ebb, err := env.StartEbbWith(ctx, harness.EbbOptions{Name: "ebb-async-" + key, Flags: append([]string{"--model-roots=" + env.Work}, st.flags...)})
		if err != nil {
			return res, err
		}
		if err := ebb.Create(ctx, asyncDep, workSpec(model, 0)); err != nil {
			return res, err
		}
		if _, _, err := ebb.WaitReady(ctx, asyncDep, 1, 2*time.Minute); err != nil {
			return res, err
		}
		// Warm up both paths, and check that answers carry their data.
		if w := asyncRun(ctx, ebb.URL, asyncDep, 100, 30*time.Second); w.failed > 0 {
			return res, fmt.Errorf("%s: async warm-up: %d of 100 failed: %s", st.name, w.failed, w.firstError)
		}
		code, body, _, err := harness.Post(ctx, http.DefaultClient, ebb.URL+"/v2/models/"+asyncDep+"/infer", asyncBody(7))
		if err != nil || code != http.StatusOK || !asyncAnswers(body, 7) {
			return res, fmt.Errorf("%s: a synchronous request: %v, HTTP %d: %.300s", st.name, err, code, body)
		}
		var syncRPS, asyncRPS []float64
		for round := 1; round <= rounds && ctx.Err() == nil; round++ {
			s := asyncSync(ctx, ebb.URL, asyncDep, n, maxTime)
			if s.Failed() > 0 {
				return res, fmt.Errorf("%s: %d of %d synchronous requests failed (%s): %s", st.name, s.Failed(), s.Sent, s.CodesText(), s.FirstError)
			}
			a := asyncRun(ctx, ebb.URL, asyncDep, n, maxTime)
			if a.failed > 0 {
				return res, fmt.Errorf("%s: %d of %d async requests failed: %s", st.name, a.failed, n, a.firstError)
			}
			syncRPS, asyncRPS = append(syncRPS, s.RPS()), append(asyncRPS, a.rps())
			env.Logf("%s round %d: sync %.0f req/s; async %.0f req/s (%d submitted in %.2f s, all results in %.2f s, %d polls pending)",
				st.name, round, s.RPS(), a.rps(), n, a.submitted.Seconds(), a.elapsed.Seconds(), a.polls)
			raw = append(raw, []string{st.name, fmt.Sprint(round), harness.F(s.RPS()), harness.F(a.rps()),
				harness.F(a.submitted.Seconds()), harness.F(a.elapsed.Seconds()), fmt.Sprint(a.polls)})
		}
		// The queue's ceiling: the same with a model that does no work,
		// once, not a goal.
		if err := ebb.Create(ctx, asyncNoop, workSpec("", 0)); err != nil {
			return res, err
		}
		if _, _, err := ebb.WaitReady(ctx, asyncNoop, 1, 2*time.Minute); err != nil {
			return res, err
		}
		ns, na := asyncSync(ctx, ebb.URL, asyncNoop, n, maxTime), asyncRun(ctx, ebb.URL, asyncNoop, n, maxTime)
		if ns.Failed() > 0 || na.failed > 0 {
			return res, fmt.Errorf("%s, no-op model: %d sync and %d async requests failed: %s %s", st.name, ns.Failed(), na.failed, ns.FirstError, na.firstError)
		}
		env.Logf("%s, no-op model: sync %.0f req/s; async %.0f req/s (%d submitted in %.2f s, all results in %.2f s)",
			st.name, ns.RPS(), na.rps(), n, na.submitted.Seconds(), na.elapsed.Seconds())
		res.Figures[key+".noop.syncRPS"], res.Figures[key+".noop.asyncRPS"] = ns.RPS(), na.rps()
		ceiling = append(ceiling, []string{st.name, harness.F(ns.RPS()), harness.F(na.rps()), harness.F(float64(n) / na.submitted.Seconds())})
		if ebb.Proc.Exited() {
			return res, fmt.Errorf("%s: ebb exited; log tail:\n%s", st.name, ebb.Proc.LogTail(2000))
		}
		env.StopProc(ebb.Proc)
		sy, as := harness.Median(syncRPS), harness.Median(asyncRPS)
		ratio := harness.Ratio(as, sy)
		res.Figures[key+".syncRPS"], res.Figures[key+".asyncRPS"], res.Figures[key+".ratio"] = sy, as, ratio
		rows = append(rows, []string{st.name, harness.F(sy), harness.F(as), harness.F(ratio)})
		res.Goals = append(res.Goals, harness.Goal{
			Name:   "async vs sync throughput, " + st.name,
			Target: fmt.Sprintf("async ≥ %.1f× sync req/s", asyncGoal),
			Ebb:    as, Peer: sy, PeerName: "sync", Unit: "req/s", Ratio: ratio, Met: ratio >= asyncGoal,
			Detail: fmt.Sprintf("%s: median of %d round(s) of %d requests: sync %.0f req/s, async %.0f req/s (first submission to last result fetched): %.2f×",
				st.name, len(syncRPS), n, sy, as, ratio),
		})
	}
	res.Tables = append(res.Tables, harness.Table{
		Caption: fmt.Sprintf("Throughput of the same deployment, median over %d round(s) of %d requests each, sync and async alternating:", rounds, n),
		Header:  []string{"Queue store", "sync req/s", "async req/s", "async / sync"},
		Rows:    rows,
	}, harness.Table{
		Caption: fmt.Sprintf("The queue's own ceiling: the same with a deployment of the echo engine doing no work, one round of %d requests (not a goal): what storing, claiming, completing and fetching cost on these CPUs, which the replica and ebb share.", n),
		Header:  []string{"Queue store", "sync req/s", "async req/s", "async submissions/s"},
		Rows:    ceiling,
	}, harness.Table{
		Caption: "Raw rounds (async: the time to the last 202, and to the last result; polls that found a request pending):",
		Header:  []string{"store", "round", "sync req/s", "async req/s", "submitted s", "all results s", "pending polls"},
		Rows:    raw,
	})
	res.Summary = fmt.Sprintf("One `ebb up` per queue store (its SQLite store, the default; then `--async-store nats://...` against a real nats-server with JetStream, `bench/cmd/ebbnats`, pinned to the server CPUs beside ebb), each with a deployment of the echo engine burning %d ms of CPU per prediction, one replica limited to one CPU. "+
		"Sync: %d requests closed loop on %d connections. Async: the same number submitted with `Prefer: respond-async` on %d connections (each stored before its 202), each body naming its request; %d pollers fetch the results in submission order (`GET /v2/async/{id}` with `Prefer: %s`, which the gateway answers as soon as the result is stored; again %s after a 202), and check that each is its request's echo. "+
		"Async throughput is the requests over the time from the first submission to the last result fetched. The worker runs up to 16 requests at once per ready replica through the gateway's chain, in process.",
		asyncWorkMs, n, asyncConns, asyncConns, asyncPollers, asyncWait, asyncPollDelay)
	return res, nil
}
