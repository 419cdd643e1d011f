package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// asyncGateway is a real gateway with async inference on a SQLite queue,
// in front of deployment m, a real replica of the echo model, served on a
// loopback listener as ebb up serves it.
type asyncGateway struct {
	url     string
	q       *sqlstore.Queue
	g       *gateway.Gateway
	waiters *queue.Waiters
}

// noWake is the control loop of a deployment that is always up.
type noWake struct{}

func (noWake) Wake(string) {}

func newAsyncGateway(t *testing.T) *asyncGateway {
	t.Helper()
	s, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	m, err := echo.Load("")
	if err != nil {
		t.Fatal(err)
	}
	rep := httptest.NewServer(server.New("m", m, server.Options{ReplicaID: "r1"}))
	t.Cleanup(rep.Close)
	tab := &routing.Table{}
	tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{balance.NewEndpoint("r1", rep.URL)}, Stats: &stats.Recorder{}})
	act := activator.New(tab, noWake{}, activator.Options{Timeout: time.Second})
	f := &asyncGateway{q: s.Queue(sqlstore.QueueOptions{}), waiters: &queue.Waiters{}}
	f.g = gateway.New(tab, act, gateway.Options{HoldTimeout: time.Second, MaxBodyBytes: 1 << 20,
		Async: &gateway.Async{Queue: f.q, Waiters: f.waiters}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := gateway.NewServer(f.g, nil)
	go srv.Serve(f.g.Listener(ln))
	t.Cleanup(func() { srv.Close() })
	f.url = "http://" + ln.Addr().String()
	t.Setenv(serverEnv, "")
	return f
}

// submit posts body to deployment m as tenant's async request and returns
// its id.
func (f *asyncGateway) submit(t *testing.T, tenant, body string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.url+"/v2/models/m/infer", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "respond-async")
	req.Header.Set(gateway.DefaultTenantHeader, tenant)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var st struct{ ID string }
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(b, &st) != nil || !queue.ValidID(st.ID) {
		t.Fatalf("async submit = %d %s, want 202 with an id", resp.StatusCode, b)
	}
	return st.ID
}

// work runs a worker over the queue, through the gateway, until the test
// ends.
func (f *asyncGateway) work(t *testing.T) {
	w := queue.NewWorker(f.q, f.g, queue.WorkerOptions{Poll: 10 * time.Millisecond, Waiters: f.waiters})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

const (
	asyncBody = `{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`
	// asyncBadBody declares 3 elements and holds 2: the replica answers 400.
	asyncBadBody = `{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32","data":[1,2]}]}`
)

// asyncCase is one command and what it must print or fail with. In args,
// {a}, {b} and {c} stand for the ids of the requests submitted.
type asyncCase struct {
	name    string
	args    []string
	wantErr string   // "" for success
	want    []string // in the output
	notWant []string // not in the output
}

func runAsyncCases(t *testing.T, url string, ids map[string]string, cases []asyncCase) {
	t.Helper()
	sub := func(s string) string {
		for k, v := range ids {
			s = strings.ReplaceAll(s, "{"+k+"}", v)
		}
		return s
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = sub(a)
			}
			out, err := runEbb(t, "", append(args, "--server", url)...)
			cmdline := "ebb " + strings.Join(args, " ")
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("%s: %v\n%s", cmdline, err, out)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), sub(tt.wantErr))):
				t.Fatalf("%s = %v (printed %q); want an error with %q", cmdline, err, out, sub(tt.wantErr))
			}
			for _, w := range tt.want {
				if !strings.Contains(out, sub(w)) {
					t.Errorf("%s printed:\n%s\nwant %q in it", cmdline, out, sub(w))
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out, sub(w)) {
					t.Errorf("%s printed:\n%s\nwant no %q in it", cmdline, out, sub(w))
				}
			}
		})
	}
}

func TestAsyncCLI(t *testing.T) {
	f := newAsyncGateway(t)
	runAsyncCases(t, f.url, nil, []asyncCase{
		{name: "empty list", args: []string{"async", "list"}, want: []string{"No async requests."}},
		{name: "empty list, filtered", args: []string{"async", "list", "--state", "done"}, want: []string{"No async requests match."}},
		{name: "empty list, json", args: []string{"async", "list", "-o", "json"}, want: []string{`"requests": []`}},
		{name: "bad state", args: []string{"async", "list", "--state", "running"}, wantErr: `--state "running": want pending, done or cancelled`},
		{name: "limit 0", args: []string{"async", "list", "--limit", "0"}, wantErr: "--limit 0: want a number from 1 to 1000"},
		{name: "limit over", args: []string{"async", "list", "--limit", "1001"}, wantErr: "--limit 1001"},
		{name: "bad output", args: []string{"async", "list", "-o", "xml"}, wantErr: `unknown output format "xml"`},
		{name: "bad tenant", args: []string{"async", "list", "--tenant", "a b"}, wantErr: "--tenant"},
		{name: "bad id", args: []string{"async", "get", "nope"}, wantErr: `"nope" is not an async request id`},
		{name: "bad id, cancel", args: []string{"async", "cancel", "nope"}, wantErr: `"nope" is not an async request id`},
		{name: "negative wait", args: []string{"async", "get", queue.NewID(), "--wait", "-1s"}, wantErr: "--wait -1s is negative"},
		{name: "unknown id", args: []string{"async", "get", queue.NewID()}, wantErr: "not found (unknown, expired, or not yours)"},
	})

	// Two requests of tenant acme, one of globex; no worker runs them yet.
	ids := map[string]string{"a": f.submit(t, "acme", asyncBody)}
	ids["b"] = f.submit(t, "acme", asyncBody)
	ids["g"] = f.submit(t, "globex", asyncBody)
	runAsyncCases(t, f.url, ids, []asyncCase{
		{name: "list", args: []string{"async", "list", "--tenant", "acme"},
			want:    []string{"ID", "DEPLOYMENT", "STATE", "RESULT", "ATTEMPTS", "AGE", "{a}   m", "{b}   m", "pending"},
			notWant: []string{"{g}"}},
		{name: "list, another tenant", args: []string{"async", "list", "--tenant", "globex"}, want: []string{"{g}"}, notWant: []string{"{a}", "{b}"}},
		{name: "list, no tenant", args: []string{"async", "list"}, want: []string{"No async requests."}},
		{name: "list, json", args: []string{"async", "list", "--tenant", "acme", "-o", "json"},
			want: []string{`"id": "{a}"`, `"id": "{b}"`, `"deployment": "m"`, `"state": "pending"`, `"createdAt"`}},
		{name: "list, newest first, limited", args: []string{"async", "list", "--tenant", "acme", "--deployment", "m", "--state", "pending", "--limit", "1"},
			want: []string{"{b}"}, notWant: []string{"{a}"}},
		{name: "list, another deployment", args: []string{"async", "list", "--tenant", "acme", "--deployment", "other"}, want: []string{"No async requests match."}},
		{name: "get pending", args: []string{"async", "get", "{a}", "--tenant", "acme"},
			want: []string{`async request "{a}" is pending: no result yet (wait for it with --wait 30s)`}},
		{name: "get pending, by location", args: []string{"async", "get", "/v2/async/{a}", "--tenant", "acme"}, want: []string{"is pending"}},
		{name: "get pending, wait", args: []string{"async", "get", "{a}", "--tenant", "acme", "--wait", "1s"},
			want: []string{"is pending: no result yet (no result within 1s; wait longer with --wait)"}},
		{name: "get pending, json", args: []string{"async", "get", "{a}", "--tenant", "acme", "-o", "json"},
			want: []string{`"id": "{a}"`, `"state": "pending"`, `"location": "/v2/async/{a}"`}, notWant: []string{"no result yet"}},
		{name: "get, no tenant", args: []string{"async", "get", "{a}"}, wantErr: `async request "{a}" not found (unknown, expired, or not yours): only its own tenant finds a request; with auth off, pass the tenant its Ebb-Tenant header named with --tenant`},
		{name: "get, another tenant", args: []string{"async", "get", "{a}", "--tenant", "globex"}, wantErr: `async request "{a}" not found`},
		{name: "cancel, another tenant", args: []string{"async", "cancel", "{a}", "--tenant", "globex"}, wantErr: `async request "{a}" not found`},
		{name: "cancel", args: []string{"async", "cancel", "{a}", "--tenant", "acme"}, want: []string{`async request "{a}" cancelled`}},
		{name: "cancel again", args: []string{"async", "cancel", "{a}", "--tenant", "acme"},
			wantErr: `async request "{a}" already finished (cancelled): there is nothing to cancel; see it with ` + "`ebb async get {a}`"},
		{name: "get cancelled", args: []string{"async", "get", "{a}", "--tenant", "acme"}, wantErr: `async request "{a}" was cancelled: it has no result`},
		{name: "get cancelled, json", args: []string{"async", "get", "{a}", "--tenant", "acme", "-o", "json"},
			wantErr: "was cancelled", want: []string{`"state": "cancelled"`, `"code": "async/cancelled"`}},
		{name: "list cancelled", args: []string{"async", "list", "--tenant", "acme", "--state", "cancelled"},
			want: []string{"{a}", "cancelled"}, notWant: []string{"{b}"}},
		{name: "globex's still pending", args: []string{"async", "get", "{g}", "--tenant", "globex"}, want: []string{"is pending"}},
	})

	// A worker runs the rest through the gateway: b and g answer, c is
	// bad input, which the replica answers 400.
	ids["c"] = f.submit(t, "acme", asyncBadBody)
	f.work(t)
	runAsyncCases(t, f.url, ids, []asyncCase{
		{name: "get done, wait", args: []string{"async", "get", "{b}", "--tenant", "acme", "--wait", "10s"},
			want: []string{`"model_name": "m"`, `"outputs": [`, "\n    {\n"}, notWant: []string{"pending"}},
		{name: "get done", args: []string{"async", "get", "{b}", "--tenant", "acme"}, want: []string{`"outputs": [`}},
		{name: "get done, json", args: []string{"async", "get", "{b}", "--tenant", "acme", "-o", "json"},
			want: []string{`"id": "{b}"`, `"state": "done"`, `"resultStatus": 200`, `"contentType": "application/json"`, `"result": {`, `"model_name": "m"`}},
		{name: "get done, yaml", args: []string{"async", "get", "{b}", "--tenant", "acme", "-o", "yaml"},
			want: []string{"state: done", "resultStatus: 200", "model_name: m"}},
		{name: "get, model answered 400", args: []string{"async", "get", "{c}", "--tenant", "acme", "--wait", "10s"},
			wantErr: `async request "{c}" is done, but the model answered 400 Bad Request (its answer is above)`, want: []string{`"error":`}},
		{name: "cancel done", args: []string{"async", "cancel", "{b}", "--tenant", "acme"}, wantErr: `async request "{b}" already finished (done)`},
		{name: "list done", args: []string{"async", "list", "--tenant", "acme", "--state", "done"},
			want: []string{"{b}", "{c}", "done", "200", "400"}, notWant: []string{"{a}"}},
		{name: "list done, json", args: []string{"async", "list", "--tenant", "acme", "--state", "done", "-o", "json"},
			want: []string{`"resultStatus": 200`, `"resultStatus": 400`, `"completedAt"`, `"attempts": 1`}},
		{name: "another tenant's done", args: []string{"async", "get", "{g}", "--tenant", "globex", "--wait", "10s"}, want: []string{`"outputs": [`}},
	})
}

// TestAsyncCLIWait: get --wait answers as soon as the result is stored,
// here by a worker that starts while the command waits.
func TestAsyncCLIWait(t *testing.T) {
	f := newAsyncGateway(t)
	id := f.submit(t, "acme", asyncBody)
	type answer struct {
		out string
		err error
	}
	done := make(chan answer, 1)
	start := time.Now()
	go func() {
		out, err := runEbb(t, "", "async", "get", id, "--tenant", "acme", "--wait", "20s", "--server", f.url)
		done <- answer{out, err}
	}()
	const late = 300 * time.Millisecond
	time.Sleep(late)
	f.work(t)
	a := <-done
	if a.err != nil || !strings.Contains(a.out, `"outputs": [`) {
		t.Fatalf("ebb async get --wait 20s = %q, %v; want the echo answer", a.out, a.err)
	}
	if took := time.Since(start); took < late || took > 10*time.Second {
		t.Errorf("ebb async get --wait 20s took %s; want it to wait for the worker (%s) and answer once it stored the result", took, late)
	}
}
