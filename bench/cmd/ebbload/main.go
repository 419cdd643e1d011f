// Command ebbload sends an open loop of POSTs (harness.OpenLoop) and prints
// what it saw as one JSON line on stdout, "result: {...}". The fairness
// scenario runs its flooding tenant with it, in a process of its own on
// the load CPUs: in the harness's own process the flood's goroutines would
// share one Go scheduler with the well-behaved tenant's, whose latencies
// would then measure the client as much as the server.
//
//	ebbload -url http://127.0.0.1:8080/v2/models/m/infer -body-file req.json \
//	    -header Ebb-Tenant=flood -rate 2000 -duration 8s -max-outstanding 1200
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
)

// headers collects repeated -header NAME=VALUE flags.
type headers map[string]string

func (h headers) String() string { return fmt.Sprint(map[string]string(h)) }

func (h headers) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("want NAME=VALUE, got %q", v)
	}
	h[name] = value
	return nil
}

// Result is what ebbload prints: harness.OpenLoopResult without the
// latencies, which a flood does not need, and with their quantiles.
type Result struct {
	Sent, Skipped int
	Codes         map[int]int
	ElapsedMs     float64
	P50Ms, P99Ms  float64
	FirstError    string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ebbload:", err)
		os.Exit(1)
	}
}

func run() error {
	h := headers{}
	url := flag.String("url", "", "URL to POST to (required)")
	bodyFile := flag.String("body-file", "", "file whose content is every request's body (required)")
	flag.Var(h, "header", "NAME=VALUE added to every request (repeatable)")
	rate := flag.Float64("rate", 100, "requests per second")
	duration := flag.Duration("duration", 5*time.Second, "how long to send")
	maxRequests := flag.Int("max-requests", 0, "most requests to send (0: rate × duration)")
	maxOutstanding := flag.Int("max-outstanding", 1000, "most answers awaited at once; beyond it a send is skipped")
	timeout := flag.Duration("timeout", 2*time.Minute, "bound on one request")
	flag.Parse()
	if *url == "" || *bodyFile == "" {
		return fmt.Errorf("give -url and -body-file")
	}
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := harness.OpenLoop(ctx, harness.OpenLoopRun{URL: *url, Body: body, Header: h, Rate: *rate, Duration: *duration,
		MaxRequests: *maxRequests, MaxOutstanding: *maxOutstanding, Timeout: *timeout})
	out, err := json.Marshal(Result{Sent: r.Sent, Skipped: r.Skipped, Codes: r.Codes, ElapsedMs: harness.Ms(r.Elapsed),
		P50Ms: harness.Ms(harness.Quantile(r.Latencies, .5)), P99Ms: harness.Ms(harness.Quantile(r.Latencies, .99)), FirstError: r.FirstError})
	if err != nil {
		return err
	}
	fmt.Printf("result: %s\n", out)
	return nil
}
