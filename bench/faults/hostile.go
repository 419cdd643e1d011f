package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
)

// steadyLoad is the background load of the hostile-client cases: 4
// clients, each ≤ 1 request per 50 ms.
func steadyLoad(ctx context.Context, env *harness.Env, url string) *Load {
	return StartLoad(ctx, url, inferBody, 4, 50*time.Millisecond, harness.Pick(env, 10000, 4000), harness.Pick(env, 90*time.Second, 40*time.Second))
}

// hostileSetup starts ebb with flags and an echo deployment of one replica
// (up to 4) under a steady load.
func hostileSetup(ctx context.Context, env *harness.Env, name string, flags ...string) (*harness.Ebb, *Monitor, error) {
	m := NewMonitor()
	b, err := env.StartEbbWith(ctx, harness.EbbOptions{Name: name, Flags: flags})
	if err != nil {
		return nil, m, err
	}
	m.WatchEbb(b)
	if err := b.Create(ctx, "d", echoSpec(1, 4)); err != nil {
		return b, m, err
	}
	_, _, err = waitReplicas(ctx, m, b, "d", 1, 60*time.Second)
	return b, m, err
}

func loadGoal(s LoadStats, what string) harness.Goal {
	detail := fmt.Sprintf("%d of %d requests of the steady load failed (%s); the longest took %.0f ms", s.Failed, s.OK+s.Failed, s.codes(), harness.Ms(s.MaxLatency))
	if s.FirstError != "" {
		detail += "; first: " + s.FirstError
	}
	return goal("other clients answered", "0 failed requests "+what, float64(s.Failed), "requests", s.Failed == 0 && s.OK > 0, detail)
}

// Connections floods ebb with idle keep-alive connections, slow headers
// and slow bodies while a steady load runs.
type Connections struct{}

func (Connections) Name() string { return "connections" }
func (Connections) Title() string {
	return "4. Idle-connection flood, slow headers, slow bodies"
}

const (
	idleTimeout   = 5 * time.Second
	headerTimeout = 3 * time.Second
	bodyTimeout   = 3 * time.Second
	connCap       = 4096
)

func (Connections) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	nIdle := harness.Pick(env, 5000, 1000)
	nSlowHead := harness.Pick(env, 200, 50)
	nSlowBody := harness.Pick(env, 100, 30)
	res := harness.Result{Summary: fmt.Sprintf("`ebb up --idle-timeout %s --read-header-timeout %s --body-timeout %s --max-conns %d` with one echo replica (maxReplicas 4) and a steady load (4 kept-alive clients, each ≤ 1 request per 50 ms), plus a new-connection probe every 250 ms. "+
		"Then, one after another: %d idle keep-alive connections (each sends one GET /v2/health/live and then nothing); %d connections that send their headers at 1 byte/s; %d infer requests whose body (Content-Length 1000) comes at 1 byte/s. "+
		"Each phase lasts until the server should have closed them all (its timeout + 3 s). Peak RSS of ebb up must stay under 512 MiB, a fixed bound (no flag caps per-connection memory; the connection cap bounds it). Recovery is the time from the last phase's end until a new client's infer request answers 200.",
		idleTimeout, headerTimeout, bodyTimeout, connCap, nIdle, nSlowHead, nSlowBody)}
	b, m, err := hostileSetup(ctx, env, "faults-connections",
		"--idle-timeout", idleTimeout.String(), "--read-header-timeout", headerTimeout.String(),
		"--body-timeout", bodyTimeout.String(), fmt.Sprintf("--max-conns=%d", connCap))
	defer m.Stop()
	if err != nil {
		return res, err
	}
	l := steadyLoad(ctx, env, inferURL(b, "d"))
	probe := startProbe(ctx, b.URL+"/v2/health/live", 250*time.Millisecond)
	maxReplicas := 0
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for ctx.Err() == nil && !l.stopped() {
			if d, err := b.Get(ctx, "d"); err == nil {
				maxReplicas = max(maxReplicas, int(d.Status.Replicas))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	addr := b.Addr
	phases := harness.Table{Caption: "Hostile connections, by phase", Header: []string{"Phase", "Connections", "Opened", "Closed by the server in time", "Longest until closed (s)", "Answers seen"}}

	// Idle flood.
	t0 := time.Now()
	idle := openIdle(ctx, addr, nIdle)
	// Connections beyond the cap wait to be accepted until earlier ones
	// time out; each round of the cap takes an idle timeout.
	rounds := (nIdle + connCap - 1) / connCap
	idleWindow := time.Duration(rounds)*idleTimeout + 3*time.Second
	closedIdle, longestIdle := idle.waitClosed(idleWindow)
	phases.Rows = append(phases.Rows, []string{"idle keep-alive", fmt.Sprint(nIdle), fmt.Sprint(idle.opened()), fmt.Sprint(closedIdle), fmt.Sprintf("%.1f", longestIdle.Seconds()), idle.answers()})
	idle.closeAll()
	floodWindow := l.Stats(t0, time.Now())

	// Slow headers.
	t1 := time.Now()
	head := openSlow(ctx, addr, nSlowHead, false)
	closedHead, longestHead := head.waitClosed(headerTimeout + 3*time.Second)
	phases.Rows = append(phases.Rows, []string{"slow headers (1 byte/s)", fmt.Sprint(nSlowHead), fmt.Sprint(head.opened()), fmt.Sprint(closedHead), fmt.Sprintf("%.1f", longestHead.Seconds()), head.answers()})
	head.closeAll()

	// Slow bodies.
	body := openSlow(ctx, addr, nSlowBody, true)
	closedBody, longestBody := body.waitClosed(bodyTimeout + 3*time.Second)
	phases.Rows = append(phases.Rows, []string{"slow bodies (1 byte/s)", fmt.Sprint(nSlowBody), fmt.Sprint(body.opened()), fmt.Sprint(closedBody), fmt.Sprintf("%.1f", longestBody.Seconds()), body.answers()})
	body.closeAll()
	slowWindow := l.Stats(t1, time.Now())
	recovered, recovery := recoveryGoal(ctx, inferURL(b, "d"), time.Now())

	time.Sleep(time.Second)
	l.Stop()
	probe.stop()
	<-watchDone
	all := l.Stats(time.Time{}, time.Time{})
	res.Tables = append(res.Tables, phases,
		loadTable("Steady load (kept-alive clients)", [2]any{"during the idle flood", floodWindow}, [2]any{"during slow headers and bodies", slowWindow}, [2]any{"whole case", all}),
		harness.Table{Caption: "New-connection probe (GET /v2/health/live, a new connection each time)", Header: []string{"Probes", "200", "Failed", "Longest (ms)", "First failure"},
			Rows: [][]string{{fmt.Sprint(probe.n), fmt.Sprint(probe.ok), fmt.Sprint(probe.n - probe.ok), fmt.Sprintf("%.0f", harness.Ms(probe.longest)), probe.firstErr}}})
	res.Goals = append(res.Goals,
		loadGoal(all, "from the kept-alive clients"),
		goal("new connections answered", "every probe 200 within the idle timeout (5 s): a new client waits at most until idle connections over the cap time out", float64(probe.n-probe.ok), "failed probes", probe.ok == probe.n && probe.n > 0 && probe.longest <= 5*time.Second,
			fmt.Sprintf("%d of %d probes answered 200; the longest took %.0f ms; first failure: %s", probe.ok, probe.n, harness.Ms(probe.longest), probe.firstErr)),
		goal("idle connections closed", fmt.Sprintf("all %d closed within %s (%d × the idle timeout, as %d exceed the cap of %d, + 3 s)", nIdle, idleWindow, rounds, max(0, nIdle-connCap), connCap), float64(closedIdle), "connections", closedIdle == nIdle,
			fmt.Sprintf("%d of %d (opened %d) closed by the server; the last after %.1f s", closedIdle, nIdle, idle.opened(), longestIdle.Seconds())),
		goal("slow headers cut", fmt.Sprintf("all %d closed within read-header timeout + 3 s", nSlowHead), float64(closedHead), "connections", closedHead == nSlowHead,
			fmt.Sprintf("%d of %d closed; the last after %.1f s", closedHead, nSlowHead, longestHead.Seconds())),
		goal("slow bodies cut", fmt.Sprintf("all %d closed within body timeout + 3 s", nSlowBody), float64(closedBody), "connections", closedBody == nSlowBody,
			fmt.Sprintf("%d of %d closed; the last after %.1f s; answers %s", closedBody, nSlowBody, longestBody.Seconds(), body.answers())),
		goal("slow bodies are not demand", "replicas stay at 1", float64(maxReplicas), "replicas", maxReplicas == 1, fmt.Sprintf("at most %d replica(s) during the case", maxReplicas)),
		recovered,
	)
	m.Sample()
	up, _, _, _ := m.Peaks()
	res.Goals = append(res.Goals, rssGoal("ebb up peak RSS", up, 512<<20, "fixed bound"))
	rssFigures(&res, m)
	res.Figures["idle.closed"] = float64(closedIdle)
	res.Figures["probe.longestMs"] = harness.Ms(probe.longest)
	res.Figures["recoverySeconds"] = recovery
	g, _ := leftoverGoal(env, m)
	res.Goals = append(res.Goals, g)
	return res, nil
}

func (l *Load) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// probe GETs url on a new connection every pace.
type probe struct {
	mu       sync.Mutex
	n, ok    int
	longest  time.Duration
	firstErr string
	quit     chan struct{}
	done     chan struct{}
}

func startProbe(ctx context.Context, url string, pace time.Duration) *probe {
	p := &probe{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for {
			select {
			case <-p.quit:
				return
			case <-ctx.Done():
				return
			case <-time.After(pace):
			}
			t := time.Now()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := c.Do(req)
			d := time.Since(t)
			p.mu.Lock()
			p.n++
			p.longest = max(p.longest, d)
			if err == nil && resp.StatusCode == http.StatusOK {
				p.ok++
			} else if p.firstErr == "" {
				if err != nil {
					p.firstErr = err.Error()
				} else {
					p.firstErr = fmt.Sprintf("HTTP %d", resp.StatusCode)
				}
			}
			p.mu.Unlock()
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	return p
}

func (p *probe) stop() {
	close(p.quit)
	<-p.done
}

// connSet is a set of raw connections the case holds open and watches for
// the server closing them.
type connSet struct {
	mu       sync.Mutex
	conns    []net.Conn
	start    time.Time
	closedAt []time.Duration // per connection: when the server closed it, 0 while open
	status   map[string]int  // first status line seen per connection, counted
	closed   atomic.Int64
	stopSend chan struct{}
	wg       sync.WaitGroup
}

func newConnSet() *connSet {
	return &connSet{start: time.Now(), status: map[string]int{}, stopSend: make(chan struct{})}
}

func (s *connSet) opened() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *connSet) answers() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.status) == 0 {
		return "none"
	}
	var parts []string
	for k, v := range s.status {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, v))
	}
	return strings.Join(parts, ", ")
}

// add registers c and reads from it until the server closes it, noting the
// status lines of the answers.
func (s *connSet) add(c net.Conn) {
	s.mu.Lock()
	i := len(s.conns)
	s.conns = append(s.conns, c)
	s.closedAt = append(s.closedAt, 0)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if strings.HasPrefix(line, "HTTP/1.1 ") {
				code := strings.TrimSpace(strings.TrimPrefix(line, "HTTP/1.1 "))
				code, _, _ = strings.Cut(code, " ")
				s.mu.Lock()
				s.status["HTTP "+code]++
				s.mu.Unlock()
			}
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return // closed by us
				}
				s.mu.Lock()
				s.closedAt[i] = time.Since(s.start)
				s.mu.Unlock()
				s.closed.Add(1)
				return
			}
		}
	}()
}

// waitClosed waits until every connection was closed by the server or
// timeout passed, and returns how many were and the latest closing time.
func (s *connSet) waitClosed(timeout time.Duration) (int, time.Duration) {
	deadline := s.start.Add(timeout)
	for time.Now().Before(deadline) && int(s.closed.Load()) < s.opened() {
		time.Sleep(100 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, longest := 0, time.Duration(0)
	for _, d := range s.closedAt {
		if d > 0 {
			n++
			longest = max(longest, d)
		}
	}
	return n, longest
}

func (s *connSet) closeAll() {
	close(s.stopSend)
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// openIdle opens n connections that each send one keep-alive GET and then
// stay idle.
func openIdle(ctx context.Context, addr string, n int) *connSet {
	s := newConnSet()
	req := "GET /v2/health/live HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for int(next.Add(1)) <= n && ctx.Err() == nil {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					continue
				}
				if _, err := c.Write([]byte(req)); err != nil {
					c.Close()
					continue
				}
				s.add(c)
			}
		}()
	}
	wg.Wait()
	// The idle timeout counts from the last answer: restart the clock.
	s.start = time.Now()
	return s
}

// openSlow opens n connections that send a request at 1 byte a second:
// its headers (withBody false) or, after whole headers, its body.
func openSlow(ctx context.Context, addr string, n int, withBody bool) *connSet {
	s := newConnSet()
	var head, trickle string
	if withBody {
		head = "POST /v2/models/d/infer HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
		trickle = strings.Repeat(" ", 1000)
	} else {
		head = "POST /v2/models/d/infer HTTP/1.1\r\n"
		trickle = "X-Slow: " + strings.Repeat("a", 1000)
	}
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			continue
		}
		if _, err := c.Write([]byte(head)); err != nil {
			c.Close()
			continue
		}
		s.add(c)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for i := 0; i < len(trickle); i++ {
				select {
				case <-s.stopSend:
					return
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				if _, err := c.Write([]byte{trickle[i]}); err != nil {
					return
				}
			}
		}()
	}
	s.start = time.Now()
	return s
}
