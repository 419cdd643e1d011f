package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
)

// Bodies sends 1 GiB bodies, declared and chunked.
type Bodies struct{}

func (Bodies) Name() string  { return "bodies" }
func (Bodies) Title() string { return "5. 1 GiB request bodies" }

const (
	bufferedCap = 64 << 20 // --max-buffered-bytes in the case
	bodyCap     = 64 << 20 // the gateway's per-request limit (default)
	gib         = 1 << 30
)

func (Bodies) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	nDeclared := harness.Pick(env, 20, 5)
	nChunked := harness.Pick(env, 8, 4)
	res := harness.Result{Summary: fmt.Sprintf("`ebb up --max-buffered-bytes %d` (64 MiB; the per-request limit is the default 64 MiB) with one echo replica and a steady load. "+
		"First %d requests declare `Content-Length: 1073741824` and send nothing more: each should get 413 at once. Then %d requests at once stream a 1 GiB chunked body as fast as loopback allows: each should be cut (an answer, or the connection closed) long before 1 GiB. "+
		"The bound on ebb up's peak RSS is its peak before the uploads plus three times the buffered-bytes cap: the cap bounds the body bytes held, Go's default GOGC lets the heap reach twice its live data before it collects, and the pieces of bodies refused at the cap are garbage still to collect. Recovery is the time from the uploads' end until a new client's infer request answers 200.", bufferedCap, nDeclared, nChunked)}
	b, m, err := hostileSetup(ctx, env, "faults-bodies", fmt.Sprintf("--max-buffered-bytes=%d", bufferedCap))
	defer m.Stop()
	if err != nil {
		return res, err
	}
	l := steadyLoad(ctx, env, inferURL(b, "d"))
	time.Sleep(time.Second)
	m.Sample()
	base, _, _, _ := m.Peaks()

	// Declared.
	declared := map[string]int{}
	var slowest time.Duration
	for range nDeclared {
		code, d := declaredBody(ctx, b.Addr)
		declared[code]++
		slowest = max(slowest, d)
	}
	// Chunked, at once.
	type up struct {
		sent   int64
		answer string
		d      time.Duration
	}
	ups := make([]up, nChunked)
	var wg sync.WaitGroup
	for i := range nChunked {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			sent, answer := chunkedBody(ctx, b.Addr, gib)
			ups[i] = up{sent, answer, time.Since(t)}
		}()
	}
	wg.Wait()
	recovered, recovery := recoveryGoal(ctx, inferURL(b, "d"), time.Now())
	time.Sleep(time.Second)
	l.Stop()
	m.Sample()
	peak, _, _, _ := m.Peaks()

	ct := harness.Table{Caption: "Chunked 1 GiB uploads (sent at once)", Header: []string{"Upload", "Bytes sent before the cut (MiB)", "Answer", "Time (s)"}}
	allCut := true
	var maxSent int64
	for i, u := range ups {
		ct.Rows = append(ct.Rows, []string{fmt.Sprint(i + 1), fmt.Sprintf("%.1f", harness.MiB(u.sent)), u.answer, fmt.Sprintf("%.2f", u.d.Seconds())})
		if u.sent >= gib {
			allCut = false
		}
		maxSent = max(maxSent, u.sent)
	}
	var dparts []string
	for k, v := range declared {
		dparts = append(dparts, fmt.Sprintf("%s ×%d", k, v))
	}
	all := l.Stats(time.Time{}, time.Time{})
	res.Tables = append(res.Tables, ct, loadTable("Steady load", [2]any{"whole case", all}))
	res.Goals = append(res.Goals,
		goal("declared 1 GiB refused", "413 within 1 s, before the body", float64(declared["HTTP 413"]), "of "+fmt.Sprint(nDeclared), declared["HTTP 413"] == nDeclared && slowest <= time.Second,
			fmt.Sprintf("answers: %s; the slowest in %.0f ms", strings.Join(dparts, ", "), harness.Ms(slowest))),
		goal("chunked 1 GiB cut", "every upload cut before 1 GiB", harness.MiB(maxSent), "MiB sent at most", allCut,
			fmt.Sprintf("the most any upload sent before the cut: %.1f MiB", harness.MiB(maxSent))),
		rssGoal("ebb up peak RSS", peak, base+3*bufferedCap, fmt.Sprintf("%.0f MiB before + 3 × the 64 MiB cap", harness.MiB(base))),
		recovered,
	)
	res.Notes = append(res.Notes, fmt.Sprintf("The steady load meanwhile: %d of %d requests failed (%s)%s. Small requests may get 503 while the uploads hold the whole buffered-bytes budget; that is the cap working, not a goal here.",
		all.Failed, all.OK+all.Failed, all.codes(), firstErrSuffix(all)))
	rssFigures(&res, m)
	res.Figures["rss.ebbUp.beforeMiB"] = harness.MiB(base)
	res.Figures["recoverySeconds"] = recovery
	g, _ := leftoverGoal(env, m)
	res.Goals = append(res.Goals, g)
	return res, nil
}

func firstErrSuffix(s LoadStats) string {
	if s.FirstError == "" {
		return ""
	}
	return "; first: " + s.FirstError
}

// declaredBody sends headers declaring a 1 GiB body and waits for the
// answer's status line.
func declaredBody(ctx context.Context, addr string) (string, time.Duration) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "dial: " + err.Error(), 0
	}
	defer c.Close()
	t := time.Now()
	fmt.Fprintf(c, "POST /v2/models/d/infer HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", addr, int64(gib))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "no answer: " + err.Error(), time.Since(t)
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return "malformed: " + line, time.Since(t)
	}
	return "HTTP " + f[1], time.Since(t)
}

// chunkedBody streams up to total bytes as a chunked body and stops when
// the server answers or closes the connection; it returns the bytes sent
// and what ended it.
func chunkedBody(ctx context.Context, addr string, total int64) (int64, string) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, "dial: " + err.Error()
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v2/models/d/infer HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", addr)
	answer := make(chan string, 1)
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			answer <- "closed without an answer (" + err.Error() + ")"
			return
		}
		f := strings.Fields(line)
		if len(f) >= 2 {
			answer <- "HTTP " + f[1]
			return
		}
		answer <- "malformed: " + line
	}()
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = '0'
	}
	head := []byte(fmt.Sprintf("%x\r\n", len(chunk)))
	var sent int64
	_ = c.SetWriteDeadline(time.Now().Add(2 * time.Minute))
	for sent < total && ctx.Err() == nil {
		select {
		case a := <-answer:
			return sent, a
		default:
		}
		if _, err := c.Write(head); err != nil {
			break
		}
		if _, err := c.Write(chunk); err != nil {
			break
		}
		if _, err := c.Write([]byte("\r\n")); err != nil {
			break
		}
		sent += int64(len(chunk))
	}
	if sent >= total {
		io.WriteString(c, "0\r\n\r\n")
	}
	select {
	case a := <-answer:
		return sent, a
	case <-time.After(30 * time.Second):
		return sent, "no answer within 30 s"
	}
}

// Shapes sends tiny requests that declare huge shapes.
type Shapes struct{}

func (Shapes) Name() string  { return "shapes" }
func (Shapes) Title() string { return "6. Huge declared shapes" }

func (Shapes) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	n := harness.Pick(env, 50, 10)
	bodies := []struct{ name, body string }{
		{"shape [214748364,10], 1 value", `{"inputs":[{"name":"input","datatype":"FP32","shape":[214748364,10],"data":[0.0]}]}`},
		{"shape [2147483647,2147483647], 1 value", `{"inputs":[{"name":"input","datatype":"FP32","shape":[2147483647,2147483647],"data":[0.0]}]}`},
		{"shape [1,2147483647], 1 value", `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,2147483647],"data":[0.0]}]}`},
		{"shape [46341,46341], 2 values", `{"inputs":[{"name":"input","datatype":"FP32","shape":[46341,46341],"data":[0.0,1.0]}]}`},
	}
	res := harness.Result{Summary: fmt.Sprintf("One echo replica under a steady load; each of %d hostile request bodies (under 100 bytes, declaring billions of elements) is sent %d times, 4 at a time, through the gateway. Each should get a 4xx; the replica's peak RSS must stay below its peak before plus 64 MiB (the per-request body limit; memory to decode is bounded by the bytes received). Recovery is the time from the last hostile answer until a new client's infer request answers 200.", len(bodies), n)}
	b, m, err := hostileSetup(ctx, env, "faults-shapes")
	defer m.Stop()
	if err != nil {
		return res, err
	}
	l := steadyLoad(ctx, env, inferURL(b, "d"))
	time.Sleep(time.Second)
	m.Sample()
	_, base, _, _ := m.Peaks()
	t := harness.Table{Caption: "Answers to the hostile shapes", Header: []string{"Request", "Answers", "Example message"}}
	all4xx := true
	c := &http.Client{Timeout: 30 * time.Second}
	for _, bd := range bodies {
		codes := map[int]int{}
		var mu sync.Mutex
		example := ""
		sem := make(chan struct{}, 4)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				code, out, _, err := harness.Post(ctx, c, inferURL(b, "d"), []byte(bd.body))
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					codes[0]++
					example = err.Error()
					return
				}
				codes[code]++
				if example == "" {
					var e struct {
						Error json.RawMessage `json:"error"`
					}
					if json.Unmarshal(out, &e) == nil && len(e.Error) > 0 {
						example = string(e.Error)
					} else {
						example = string(out)
					}
					if len(example) > 200 {
						example = example[:200] + "…"
					}
				}
			}()
		}
		wg.Wait()
		var parts []string
		for k, v := range codes {
			parts = append(parts, fmt.Sprintf("HTTP %d ×%d", k, v))
			if k < 400 || k >= 500 {
				all4xx = false
			}
		}
		t.Rows = append(t.Rows, []string{bd.name, strings.Join(parts, ", "), example})
	}
	recovered, recovery := recoveryGoal(ctx, inferURL(b, "d"), time.Now())
	time.Sleep(time.Second)
	l.Stop()
	m.Sample()
	_, peak, _, _ := m.Peaks()
	all := l.Stats(time.Time{}, time.Time{})
	res.Tables = append(res.Tables, t, loadTable("Steady load", [2]any{"whole case", all}))
	res.Goals = append(res.Goals,
		goal("hostile shapes refused", "every answer 4xx", 0, "", all4xx, "see the table of answers"),
		rssGoal("replica peak RSS", peak, base+bodyCap, fmt.Sprintf("%.0f MiB before + 64 MiB", harness.MiB(base))),
		loadGoal(all, "from the steady load"),
		recovered,
	)
	rssFigures(&res, m)
	res.Figures["rss.replica.beforeMiB"] = harness.MiB(base)
	res.Figures["recoverySeconds"] = recovery
	g, _ := leftoverGoal(env, m)
	res.Goals = append(res.Goals, g)
	return res, nil
}

// ReplicaAbuse asks for absurd replica counts.
type ReplicaAbuse struct{}

func (ReplicaAbuse) Name() string  { return "replicas" }
func (ReplicaAbuse) Title() string { return "7. maxReplicas abuse" }

const replicaCap = 6

func (ReplicaAbuse) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	nDeps := 4
	perDep := 3
	res := harness.Result{Summary: fmt.Sprintf("`ebb up --max-replicas-total %d`. Specs with `maxReplicas: 1000000000` and `minReplicas: 1000000` are sent to the admin API and should be refused with a 4xx. Then %d echo deployments with minReplicas %d each (%d replicas wanted) are created; the number of replica processes under ebb up is sampled every 100 ms for 10 s and must never exceed the cap. Then the deployments with the most replicas are deleted until the rest fit under the cap; recovery is the time from then until those the cap held back have all their replicas and answer.", replicaCap, nDeps, perDep, nDeps*perDep)}
	m := NewMonitor()
	defer m.Stop()
	b, err := env.StartEbbWith(ctx, harness.EbbOptions{Name: "faults-replicas", Flags: []string{fmt.Sprintf("--max-replicas-total=%d", replicaCap)}})
	if err != nil {
		return res, err
	}
	m.WatchEbb(b)
	t := harness.Table{Caption: "Abusive specs", Header: []string{"Spec", "Answer"}}
	refused := true
	for _, sp := range []struct{ name, body string }{
		{"maxReplicas 1000000000", `{"name":"abuse1","spec":{"engine":"echo","scaling":{"maxReplicas":1000000000}}}`},
		{"minReplicas 1000000", `{"name":"abuse2","spec":{"engine":"echo","scaling":{"minReplicas":1000000,"maxReplicas":1000000}}}`},
	} {
		code, out, err := b.Do(ctx, http.MethodPost, "/v1/deployments", []byte(sp.body))
		ans := fmt.Sprintf("HTTP %d: %.200s", code, out)
		if err != nil {
			ans = err.Error()
		}
		if err != nil || code < 400 || code >= 500 {
			refused = false
		}
		t.Rows = append(t.Rows, []string{sp.name, ans})
	}
	for i := range nDeps {
		if err := b.Create(ctx, fmt.Sprintf("many%d", i), echoSpec(int32(perDep), int32(perDep))); err != nil {
			return res, err
		}
	}
	most := 0
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		most = max(most, len(b.Proc.Tree())-1)
		time.Sleep(100 * time.Millisecond)
	}
	ready, reasons := 0, []string{}
	for i := range nDeps {
		d, err := b.Get(ctx, fmt.Sprintf("many%d", i))
		if err != nil {
			continue
		}
		ready += int(d.Status.ReadyReplicas)
		if d.Status.Reason != "" {
			reasons = append(reasons, fmt.Sprintf("many%d: %s", i, d.Status.Reason))
		}
	}
	// The fault ends when the deployments with the most replicas go, until
	// the rest fit under the cap: those the cap held back then get every
	// replica they asked for.
	type dep struct {
		name  string
		ready int
	}
	deps := make([]dep, 0, nDeps)
	for i := range nDeps {
		name := fmt.Sprintf("many%d", i)
		d, err := b.Get(ctx, name)
		if err != nil {
			return res, err
		}
		deps = append(deps, dep{name, int(d.Status.ReadyReplicas)})
	}
	slices.SortStableFunc(deps, func(a, b dep) int { return b.ready - a.ready })
	for len(deps)*perDep > replicaCap {
		if err := b.Delete(ctx, deps[0].name); err != nil {
			return res, err
		}
		deps = deps[1:]
	}
	var short []string
	for _, d := range deps {
		if d.ready < perDep {
			short = append(short, d.name)
		}
	}
	recovered := replicasRecovered(ctx, b, short, perDep, time.Now())
	res.Tables = append(res.Tables, t)
	res.Goals = append(res.Goals,
		recovered,
		goal("absurd replica counts refused", "4xx at create", 0, "", refused, "see the table of abusive specs"),
		goal("replica processes bounded", fmt.Sprintf("≤ %d (--max-replicas-total)", replicaCap), float64(most), "processes", most <= replicaCap && most > 0,
			fmt.Sprintf("at most %d processes under ebb up; %d replicas ready at the end", most, ready)),
	)
	if len(reasons) > 0 {
		res.Notes = append(res.Notes, "Status reasons at the end: "+strings.Join(reasons, "; "))
	}
	rssFigures(&res, m)
	res.Figures["processes.most"] = float64(most)
	res.Figures["recoverySeconds"] = recovered.Ebb
	g, _ := leftoverGoal(env, m)
	res.Goals = append(res.Goals, g)
	return res, nil
}

// replicasRecovered waits, from end, until the deployments names (held
// back by the cap) have perDep ready replicas each and the first answers;
// recovery is the time from end until then.
func replicasRecovered(ctx context.Context, b *harness.Ebb, names []string, perDep int, end time.Time) harness.Goal {
	target := fmt.Sprintf("deployments held back by the cap get all %d replicas each, and answer, within %s of the others' deletion", perDep, recoveryWithin)
	if len(names) == 0 {
		return goal("held-back replicas started", target, -1, "s", false, "no deployment was held back by the cap: the case did not test it")
	}
	for time.Since(end) < recoveryWithin && ctx.Err() == nil {
		ready := 0
		for _, name := range names {
			if d, err := b.Get(ctx, name); err == nil && int(d.Status.ReadyReplicas) >= perDep {
				ready++
			}
		}
		if ready == len(names) {
			g, s := recoveryGoal(ctx, inferURL(b, names[0]), end)
			g.Name, g.Target = "held-back replicas started", target
			if s >= 0 {
				g.Detail = fmt.Sprintf("%s, held back, had %d ready replicas each and %s answered %.3f s after the others' deletion", strings.Join(names, ", "), perDep, names[0], s)
			}
			return g
		}
		time.Sleep(50 * time.Millisecond)
	}
	return goal("held-back replicas started", target, -1, "s", false, fmt.Sprintf("not every one of %s had %d ready replicas within %s", strings.Join(names, ", "), perDep, recoveryWithin))
}
