package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
)

// chromium finds Debian's chromium (apt-get install chromium). Without
// it the dashboard test skips, except under CI=true, where it fails.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed, and CI=true: apt-get install -y chromium (see .ci/run)")
	}
	t.Skip("chromium is not installed: apt-get install -y chromium to run the dashboard test in headless Chromium")
	return ""
}

// artifactsDir is where the test saves its screenshots: $EBB_TEST_ARTIFACTS
// (kept after the run), else the test's temporary directory.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("EBB_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	dir = filepath.Join(dir, "ui")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard screenshots in %s", dir)
	return dir
}

// TestDashboard drives the web dashboard (/ui) of a real `ebb up` in
// headless Chromium: it signs in with a read token, finds a deployment
// among the list's pages by searching, follows it through a cold start
// (replicas 0 → 1 on the page and in the replicas chart, the cold start's
// phases in their chart, the requests in the request and latency charts),
// opens every other view, and saves a screenshot of each. Any script
// error or Content-Security-Policy violation fails it.
func TestDashboard(t *testing.T) {
	chrome := chromium(t)
	art := artifactsDir(t)
	row := loadGolden(t).Rows[0]
	p := startEbb(t, freeAddr(t), t.TempDir())
	d := diabetesSpec(t, serving.Scaling{MinReplicas: 0, MaxReplicas: 2, ScaleToZeroAfter: serving.D(5 * time.Minute)})
	if code := p.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("create deployment: %d", code)
	}
	// More deployments than a page, so that search and paging matter.
	for i := range 60 {
		o := diabetesSpec(t, serving.Scaling{MinReplicas: 0, MaxReplicas: 1})
		o.Name = fmt.Sprintf("other-%02d", i)
		if code := p.do(http.MethodPost, "/v1/deployments", o, nil); code != http.StatusCreated {
			t.Fatalf("create %s: %d", o.Name, code)
		}
	}
	var tok api.CreatedToken
	if code := p.do(http.MethodPost, "/v1/tokens", api.TokenRequest{Name: "dashboard", Scopes: []string{"read"}}, &tok); code != http.StatusCreated {
		t.Fatalf("create a read token: %d", code)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.WindowSize(1400, 1100), chromedp.Flag("disable-dev-shm-usage", true))...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	var mu sync.Mutex
	var problems []string
	chromedp.ListenTarget(browser, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+ev.ExceptionDetails.Error())
		case *log.EventEntryAdded:
			// Failed loads are the API's 401 before sign-in and the 404s
			// of optional routes (a deployment without a rollout).
			if ev.Entry.Level == log.LevelError && ev.Entry.Source != log.SourceNetwork {
				problems = append(problems, "console: "+ev.Entry.Text)
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError {
				problems = append(problems, "console.error")
			}
		}
	})
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(browser, actions...); err != nil {
			shot(t, browser, art, "failed")
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(js string, out any) {
		t.Helper()
		run("evaluate "+js, chromedp.Evaluate(js, out))
	}

	// Sign in.
	run("open /ui", chromedp.Navigate(p.base+"/ui"), chromedp.WaitVisible("#login-form"))
	shot(t, browser, art, "login")
	run("sign in", chromedp.SendKeys("#token", tok.Secret), chromedp.Click("#login-form button"),
		chromedp.WaitVisible("#deployments table"))
	var count string
	run("list", chromedp.Text("#count", &count))
	if count != "1–50 of 61" {
		t.Errorf("list count %q, want 1–50 of 61", count)
	}
	run("next page", chromedp.Click("#next"), waitText("#count", "51–61 of 61"))
	run("search", chromedp.SendKeys("#search", "other-1"), waitText("#count", "1–10 of 10"))
	shot(t, browser, art, "deployments")

	// The deployment, cold.
	run("open the deployment", goHash("#/deployments"), waitText("#count", "1–50 of 61"),
		chromedp.Click(`#deployments a[href="#/deployments/diabetes"]`),
		chromedp.WaitVisible("#summary #replicas"), waitText("#replicas", "0/0"))
	var labels map[string][]string
	eval(`Object.fromEntries(Object.entries(window.ebbCharts).map(([k, u]) => [k, u.series.slice(1).map(s => s.label)]))`, &labels)
	want := map[string][]string{
		"replicas":    {"desired", "replicas", "ready"},
		"concurrency": {"stable window", "panic window", "in flight"},
		"requests":    {"requests/s", "errors/s"},
		"latency":     {"p50", "p90", "p99"},
		"coldstart":   {"duration"},
	}
	for k, w := range want {
		if !slices.Equal(labels[k], w) {
			t.Errorf("chart %s has series %v, want %v", k, labels[k], w)
		}
	}
	var canvases int
	eval(`document.querySelectorAll('.uplot canvas').length`, &canvases)
	if canvases < 5 {
		t.Errorf("%d chart canvases on the deployment page, want 5", canvases)
	}
	shot(t, browser, art, "deployment-cold")

	// A request wakes it: the page follows replicas 0 → 1.
	reqDone := make(chan error, 1)
	go func() {
		var err error
		for i := range 20 {
			var code int
			_, code, _, err = infer(ctx, p.base, row)
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("request %d: status %d", i, code)
			}
			if err != nil {
				break
			}
		}
		reqDone <- err
	}()
	var seen []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		var s string
		eval(`document.getElementById('replicas').textContent`, &s)
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		if s == "1/1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page showed replicas %v, never 1/1 within 90s", seen)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if seen[0] != "0/0" {
		t.Errorf("the page showed replicas %v: want 0/0 first", seen)
	}
	if err := <-reqDone; err != nil {
		t.Fatalf("requests: %v", err)
	}
	// The replicas chart saw it too, and the cold start has its phases.
	var ready []any
	eval(`window.ebbCharts.replicas.data[3].filter(v => v !== null && v !== undefined)`, &ready)
	if len(ready) < 2 || ready[0] != float64(0) || ready[len(ready)-1] != float64(1) {
		t.Errorf("replicas chart's ready series = %v, want 0 … 1", ready)
	}
	var phases []string
	run("cold start chart", waitJS(`(window.ebbCharts.coldstart?.names || []).length >= 2`))
	eval(`window.ebbCharts.coldstart.names`, &phases)
	if !slices.Contains(phases, "ready") || !slices.Contains(phases, "model loaded") {
		t.Errorf("cold start chart's phases %v, want model loaded and ready among them", phases)
	}
	// The sampler takes request stats every 5 s.
	run("request stats", waitJS(`window.ebbCharts.requests.data[1].some(v => v > 0) && window.ebbCharts.latency.data[1].some(v => v > 0)`))
	run("decisions", chromedp.WaitVisible("#decisions table"))
	shot(t, browser, art, "deployment-warm")

	// The other views load and chart: a tenant limit and a batch job
	// (which runs a deployment of its own, so only now) to show.
	if code := p.do(http.MethodPut, "/v1/limits/acme", api.LimitBody{Rate: 5, Burst: 10, Share: 2}, nil); code != http.StatusCreated {
		t.Fatalf("set a tenant limit: %d", code)
	}
	job := exampleJob(t, filepath.Join(t.TempDir(), "scores.csv"))
	job.Name = "nightly"
	if code := p.do(http.MethodPost, "/v1/jobs", job, nil); code != http.StatusCreated {
		t.Fatalf("submit a job: %d", code)
	}
	for _, v := range []struct{ hash, ready string }{
		{"#/pools", "#pools p"},
		{"#/tenants", "#limits td"},
		{"#/jobs", "#jobs progress"},
		{"#/cost?since=1h", "#cost-total"},
	} {
		run("open "+v.hash, goHash(v.hash), chromedp.WaitVisible(v.ready))
		shot(t, browser, art, strings.Trim(strings.SplitN(v.hash, "?", 2)[0], "#/"))
	}
	var limitsText, jobsText string
	run("tenants and jobs", goHash("#/tenants"), waitJS(`(document.getElementById('limits')?.textContent || '').includes('acme')`),
		chromedp.Text("#limits", &limitsText),
		goHash("#/jobs"), waitJS(`(document.getElementById('jobs')?.textContent || '').includes('nightly')`), chromedp.Text("#jobs", &jobsText))
	if !strings.Contains(limitsText, "5/s") {
		t.Errorf("tenants view %q, want acme's rate 5/s", limitsText)
	}
	if !strings.Contains(jobsText, "rows") {
		t.Errorf("jobs view %q, want the job's rows done", jobsText)
	}
	var costNames []string
	run("cost chart", goHash("#/cost?since=1h"), waitJS(`(window.ebbCharts.cost?.names || []).includes('diabetes')`))
	eval(`window.ebbCharts.cost.names`, &costNames)
	if !slices.Contains(costNames, "diabetes") {
		t.Errorf("cost chart covers %v, want diabetes", costNames)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, pr := range problems {
		t.Errorf("browser: %s", pr)
	}
}

// goHash opens one of the page's views, as a click on a link does.
func goHash(hash string) chromedp.Action {
	return chromedp.Evaluate(fmt.Sprintf(`location.hash = %q`, hash), nil)
}

// waitText waits until sel's text is want.
func waitText(sel, want string) chromedp.Action {
	return waitJS(fmt.Sprintf(`(document.querySelector(%q)?.textContent || '') === %q`, sel, want))
}

// waitJS waits until the expression is true (the page polls every 2 s).
func waitJS(expr string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		for {
			var ok bool
			if err := chromedp.Evaluate(expr, &ok).Do(ctx); err != nil {
				return err
			}
			if ok {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s: %w", expr, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
}

// shot saves a screenshot of the whole page as name.png in dir.
func shot(t *testing.T, browser context.Context, dir, name string) {
	t.Helper()
	var png []byte
	if err := chromedp.Run(browser, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("save screenshot: %v", err)
	}
}

// runDashboard is the part of the scenario both homes pass for the web
// dashboard: /ui is served where the admin API is (ebb up's address, the
// chart's gateway Service, which passes it to the operator), to anyone,
// under a strict Content-Security-Policy; the data it shows needs a
// token, and the deployments list pages and searches on the server.
func runDashboard(t *testing.T, h *home) {
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct {
		path string
		code int
		has  string
	}{
		{"/ui", http.StatusMovedPermanently, ""},
		{"/ui/", http.StatusOK, `src="app.js"`},
		{"/ui/app.js", http.StatusOK, "import"},
		{"/ui/vendor/uPlot.iife.min.js", http.StatusOK, "uPlot"},
	} {
		resp, err := noRedirect.Get(h.base + c.path)
		if err != nil {
			t.Fatalf("[%s] GET %s: %v", h.name, c.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(b), c.has) {
			t.Errorf("[%s] GET %s (no token) = %d, want %d with %q", h.name, c.path, resp.StatusCode, c.code, c.has)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("[%s] GET %s: Content-Security-Policy %q", h.name, c.path, csp)
		}
	}
	var page api.Page
	if code, body := h.do(http.MethodGet, "/v1/deployments?limit=1&search=DIABETES", nil, &page); code != http.StatusOK ||
		len(page.Items) != 1 || page.Items[0].Name != "diabetes" || page.Total == nil || *page.Total < 1 {
		t.Errorf("[%s] GET /v1/deployments?limit=1&search=DIABETES = %d %+v %s; want diabetes", h.name, code, page, body)
	}
	// Request statistics over time, from the requests of the scenario so
	// far: ebb up samples its gateway's metrics; in a cluster each gateway
	// sends its counters with its demand reports, and the operator sums
	// them. Either samples every 5 s.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var stats api.StatsList
		code, body := h.do(http.MethodGet, "/v1/deployments/diabetes/stats", nil, &stats)
		var requests uint64
		timed := false
		for _, s := range stats.Items {
			requests += s.Requests
			timed = timed || s.P50 != nil
		}
		if code == http.StatusOK && requests > 0 && timed {
			t.Logf("[%s] stats: %d samples, %d requests", h.name, len(stats.Items), requests)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("[%s] GET /v1/deployments/diabetes/stats = %d %s; want samples with requests and latencies", h.name, code, body)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if code, _ := h.do(http.MethodGet, "/v1/deployments/no-such/stats", nil, nil); code != http.StatusNotFound {
		t.Errorf("[%s] GET /v1/deployments/no-such/stats = %d, want 404", h.name, code)
	}
}
