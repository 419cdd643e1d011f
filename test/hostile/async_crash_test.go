package hostile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/queue/natsq"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// The crash test of issue 15: `ebb up` is SIGKILLed while 1,000 async
// requests it acknowledged are queued or in flight, and started again on
// the same data directory. Every acknowledged request (every 202) must end
// with exactly one result, its own, and none may be lost: checked through
// the API and in the queue's store. Once with the queue in ebb's SQLite
// store, once in NATS JetStream (a real nats-server in this process).

const (
	crashRequests = 1000
	// crashWorkMs makes the replica slow enough that most requests are
	// still queued when the last of them is acknowledged.
	crashWorkMs = 10
	crashTenant = "crash"
	crashDep    = "crash"
	// crashLease is the lease asked of ebb up when it has --async-lease;
	// without the flag a request in flight at the kill runs again only
	// once queue.WorkerOptions' default lease (5 minutes) has passed.
	crashLease        = 5 * time.Second
	crashDefaultLease = 5 * time.Minute
)

// crashBody is request i's body: its data name it, so that its result
// shows which request it answers.
func crashBody(i int) string {
	return fmt.Sprintf(`{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[%d,0.25]}]}`, i)
}

// answersRequest reports whether an echo answer carries request i's data.
func answersRequest(body []byte, i int) bool {
	var r struct {
		Outputs []struct {
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	return json.Unmarshal(body, &r) == nil && len(r.Outputs) == 1 && len(r.Outputs[0].Data) == 2 &&
		r.Outputs[0].Data[0] == float64(i) && r.Outputs[0].Data[1] == 0.25
}

// leaseFlag returns the flags that shorten the async lease, and the lease
// ebb up will use.
func leaseFlag(t *testing.T) ([]string, time.Duration) {
	out, _ := exec.Command(ebb, "up", "--help").CombinedOutput()
	if strings.Contains(string(out), "--async-lease") {
		return []string{"--async-lease", crashLease.String()}, crashLease
	}
	t.Logf("ebb up has no --async-lease: requests in flight at the kill wait out the default lease of %s", crashDefaultLease)
	return nil, crashDefaultLease
}

// crashStore is one queue store ebb up can keep async requests in.
type crashStore struct {
	name string
	// start readies the store and returns ebb up's flags for it.
	start func(t *testing.T) []string
	// open opens the store while ebb up is down, for the checks; close
	// closes it before ebb up starts again.
	open func(t *testing.T, u *up) (q queue.Queue, close func())
}

// startNATS runs a real nats-server with JetStream on a temporary
// directory in this process, on a random loopback port.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func crashStores() []crashStore {
	var ns *server.Server
	return []crashStore{
		{
			name:  "sqlite",
			start: func(*testing.T) []string { return nil },
			open: func(t *testing.T, u *up) (queue.Queue, func()) {
				st, err := sqlite.Open(t.Context(), filepath.Join(u.dataDir, "ebb.db"))
				if err != nil {
					t.Fatal(err)
				}
				return st.Queue(sqlstore.QueueOptions{}), func() { st.Close() }
			},
		},
		{
			name: "nats",
			start: func(t *testing.T) []string {
				ns = startNATS(t)
				return []string{"--async-store", ns.ClientURL()}
			},
			open: func(t *testing.T, _ *up) (queue.Queue, func()) {
				nc, err := nats.Connect(ns.ClientURL())
				if err != nil {
					t.Fatal(err)
				}
				q, err := natsq.Open(t.Context(), nc, natsq.Options{})
				if err != nil {
					nc.Close()
					t.Fatal(err)
				}
				return q, nc.Close
			},
		},
	}
}

// TestAsyncSurvivesSIGKILL is the crash test of issue 15, for each store.
func TestAsyncSurvivesSIGKILL(t *testing.T) {
	lease, leaseTime := leaseFlag(t)
	for _, st := range crashStores() {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			crashTest(t, st, lease, leaseTime)
		})
	}
}

func crashTest(t *testing.T, st crashStore, lease []string, leaseTime time.Duration) {
	roots := t.TempDir()
	model := echoModel(t, roots, crashWorkMs)
	flags := append(st.start(t), lease...)
	u := startUp(t, roots, flags...)
	u.deploy(t, crashDep, echoSpec(model, 0))

	acked, refused := submitUntilKilled(t, u)
	t.Logf("%d requests acknowledged (202) when ebb up was SIGKILLed; %d refused before the kill", len(acked), refused)
	if refused > 0 {
		t.Errorf("%d submissions were refused before the kill", refused)
	}
	if len(acked) < crashRequests {
		t.Fatalf("only %d requests acknowledged, want %d", len(acked), crashRequests)
	}

	// At the kill: every acknowledged request is in the store, and some
	// have no result yet (else the kill tested nothing).
	q, closeStore := st.open(t, u)
	before := map[string]*queue.Result{}
	pending, claimed := 0, 0
	for id, i := range acked {
		rec, err := q.Get(t.Context(), crashTenant, id)
		if err != nil {
			t.Errorf("request %d (%s) was acknowledged but is not in the store: %v", i, id, err)
			continue
		}
		switch {
		case rec.State == queue.Done:
			before[id] = rec.Result
		case rec.Attempts > 0:
			claimed++
			pending++
		default:
			pending++
		}
	}
	t.Logf("at the kill: %d done, %d without a result (%d of them recorded as claimed)", len(before), pending, claimed)
	closeStore()
	if pending == 0 {
		t.Fatalf("every request had its result before the kill: make the replica slower (crashWorkMs)")
	}

	// Started again on the same data directory: every acknowledged
	// request gets its result, once.
	u.launch(t, roots, flags...)
	first := fetchAll(t, u, acked, leaseTime+2*time.Minute)
	again := fetchAll(t, u, acked, time.Minute)
	for id, body := range first {
		if !bytes.Equal(body, again[id]) {
			t.Errorf("request %d (%s): result changed between two reads: %s, then %s", acked[id], id, body, again[id])
		}
	}
	u.stop(t)

	// In the store: one record per acknowledged request, done with its own
	// result; those done before the kill kept the result they had.
	q, closeStore = st.open(t, u)
	defer closeStore()
	recs, err := q.List(t.Context(), crashTenant, queue.ListOptions{Limit: 10 * crashRequests})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	reran, orphans := 0, 0
	for _, r := range recs {
		seen[r.ID]++
		if r.Attempts > 1 {
			reran++
		}
		_, ack := acked[r.ID]
		switch {
		case r.State == queue.Done:
		case !ack && r.Attempts == 0:
			// Stored but never acknowledged, and never run: the kill
			// fell between writing its record and queueing it (NATS
			// keeps the two apart). Its client got no id; the record
			// expires with its deadline.
			orphans++
		default:
			t.Errorf("request %s (acknowledged: %v) is %s after the restart; want done", r.ID, ack, r.State)
		}
	}
	for id, i := range acked {
		switch n := seen[id]; {
		case n == 0:
			t.Errorf("request %d (%s): acknowledged, and gone from the store", i, id)
		case n > 1:
			t.Errorf("request %d (%s): %d records", i, id, n)
		}
		rec, err := q.Get(t.Context(), crashTenant, id)
		if err != nil || rec.Result == nil {
			t.Errorf("request %d (%s): no result in the store: %v", i, id, err)
			continue
		}
		if rec.Result.Status != http.StatusOK || !answersRequest(rec.Result.Body, i) || !bytes.Equal(rec.Result.Body, first[id]) {
			t.Errorf("request %d (%s): stored result %d %s; served %s", i, id, rec.Result.Status, rec.Result.Body, first[id])
		}
		if b := before[id]; b != nil && (!b.CompletedAt.Equal(rec.Result.CompletedAt) || !bytes.Equal(b.Body, rec.Result.Body)) {
			t.Errorf("request %d (%s): its result, stored at %s before the kill, was replaced by one of %s", i, id, b.CompletedAt, rec.Result.CompletedAt)
		}
	}
	if depth, err := q.Depth(t.Context(), crashDep); err != nil || depth != 0 {
		t.Errorf("queue depth after every result: %d, %v; want 0", depth, err)
	}
	t.Logf("after the restart: %d records (%d acknowledged, %d stored but not acknowledged); %d ran more than once; %d unacknowledged left pending, never queued",
		len(recs), len(acked), len(recs)-len(acked), reran, orphans)
}

// submitUntilKilled submits async requests on 16 connections; once
// crashRequests are acknowledged it SIGKILLs ebb up while the submitters
// keep going, so that some submissions are cut off mid-way. It returns the
// acknowledged requests (id → index) and how many were refused before the
// kill.
func submitUntilKilled(t *testing.T, u *up) (map[string]int, int) {
	var (
		mu      sync.Mutex
		acked   = map[string]int{}
		refused int
		next    atomic.Int64
		killed  atomic.Bool
		wg      sync.WaitGroup
	)
	enough := make(chan struct{})
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer c.CloseIdleConnections()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= 2*crashRequests {
					return
				}
				id, code, err := submitCrash(c, u.base, i)
				mu.Lock()
				switch {
				case err != nil && killed.Load():
					mu.Unlock()
					return // ebb up is gone
				case err != nil || code != http.StatusAccepted:
					refused++
					if refused == 1 {
						t.Logf("submission %d: %d %v", i, code, err)
					}
				default:
					acked[id] = i
					if len(acked) == crashRequests {
						close(enough)
					}
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(3 * time.Minute):
		t.Error("1,000 submissions not acknowledged within 3 minutes")
	}
	killed.Store(true)
	u.kill(t)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return acked, refused
}

// submitCrash submits request i with Prefer: respond-async and returns
// its id when acknowledged.
func submitCrash(c *http.Client, base string, i int) (string, int, error) {
	hr, err := http.NewRequest(http.MethodPost, base+"/v2/models/"+crashDep+"/infer", strings.NewReader(crashBody(i)))
	if err != nil {
		return "", 0, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Prefer", "respond-async")
	hr.Header.Set(tenantHeader, crashTenant)
	resp, err := c.Do(hr)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", 0, err // cut off: not acknowledged
	}
	var st struct {
		ID string `json:"id"`
	}
	if resp.StatusCode == http.StatusAccepted && (json.Unmarshal(b, &st) != nil || st.ID == "") {
		return "", resp.StatusCode, fmt.Errorf("202 without an id: %s", b)
	}
	return st.ID, resp.StatusCode, nil
}

// fetchAll polls every request's result through the API, on 8
// connections, until each has one (or timeout passes), checks that each
// is its own request's answer, and returns them by id.
func fetchAll(t *testing.T, u *up, acked map[string]int, timeout time.Duration) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer c.CloseIdleConnections()
	var mu sync.Mutex
	got := map[string][]byte{}
	left := make([]string, 0, len(acked))
	for id := range acked {
		left = append(left, id)
	}
	for pass := 0; len(left) > 0; pass++ {
		if pass > 0 {
			select {
			case <-ctx.Done():
				t.Fatalf("%d of %d requests have no result after %s (e.g. %s)", len(left), len(acked), timeout, left[0])
			case <-time.After(time.Second):
			}
		}
		ids := make(chan string, len(left))
		for _, id := range left {
			ids <- id
		}
		close(ids)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := range ids {
					body, done, err := fetchResult(ctx, c, u.base, id)
					if err != nil {
						t.Errorf("request %d (%s): %v", acked[id], id, err)
						continue
					}
					if !done {
						continue
					}
					if !answersRequest(body, acked[id]) {
						t.Errorf("request %d (%s): the result is not its answer: %s", acked[id], id, body)
					}
					mu.Lock()
					got[id] = body
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		left = left[:0]
		for id := range acked {
			if got[id] == nil {
				left = append(left, id)
			}
		}
	}
	return got
}

// fetchResult asks for id's result: the body once done (the chain's
// answer must have been 200), done false while it is pending.
func fetchResult(ctx context.Context, c *http.Client, base, id string) ([]byte, bool, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/async/"+id, nil)
	if err != nil {
		return nil, false, err
	}
	hr.Header.Set(tenantHeader, crashTenant)
	resp, err := c.Do(hr)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		return nil, false, err
	case resp.StatusCode == http.StatusAccepted:
		return nil, false, nil
	case resp.StatusCode != http.StatusOK:
		return nil, false, fmt.Errorf("GET /v2/async/%s: %d %s", id, resp.StatusCode, b)
	case resp.Header.Get("Ebb-Result-Status") != "200":
		return nil, false, fmt.Errorf("GET /v2/async/%s: the chain answered %s: %s", id, resp.Header.Get("Ebb-Result-Status"), b)
	}
	return b, true, nil
}
