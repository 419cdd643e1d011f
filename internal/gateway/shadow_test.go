package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// The outputs the echo replica answers for body, as a replica that
// computes them differently would answer them.
const (
	echoedOutput  = `{"model_name":"m","outputs":[{"name":"input","datatype":"FP32","shape":[1,2],"data":[1,2]}]}`
	changedOutput = `{"model_name":"m","outputs":[{"name":"input","datatype":"FP32","shape":[1,2],"data":[1,2.5]}]}`
)

// fakeReplica serves h on loopback as a replica of deployment m.
func fakeReplica(t testing.TB, id string, h http.HandlerFunc) *balance.Endpoint {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return balance.NewEndpoint(id, srv.URL)
}

// answering is a replica handler that answers status and out.
func answering(status int, out string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, out)
	}
}

// binaryAnswer answers the echoed output as binary tensor data.
func binaryAnswer(t testing.TB) http.HandlerFunc {
	t.Helper()
	resp := oip.InferResponse{ModelName: "m", Outputs: []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{1, 2}, Data: []float32{1, 2}}}}
	b, jsonLen, err := oip.AppendResponse(nil, &resp, []bool{true})
	if err != nil {
		t.Fatal(err)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set(oip.HeaderInferenceHeaderLength, strconv.Itoa(jsonLen))
		w.Write(b)
	}
}

// shadowFixture routes deployment m to primaries, with a shadow track
// m.shadow of shadows that sh (Key, Tally and InFlight filled in here)
// describes.
type shadowFixture struct {
	*fixture
	sh        *routing.Shadow
	shadowRec *stats.Recorder
}

func newShadowFixture(t testing.TB, primaries, shadows []*balance.Endpoint, sh routing.Shadow) *shadowFixture {
	t.Helper()
	sh.Key, sh.Tally, sh.InFlight = "m.shadow", &traffic.Tally{}, new(atomic.Int32)
	if sh.Tolerance == (traffic.Tolerance{}) {
		sh.Tolerance = traffic.DefaultTolerance
	}
	f := &shadowFixture{fixture: &fixture{tab: &routing.Table{}, rec: &stats.Recorder{}}, sh: &sh, shadowRec: &stats.Recorder{}}
	f.tab.Publish(routing.Route{Deployment: "m", Endpoints: primaries, Stats: f.rec, Shadow: f.sh})
	if shadows != nil { // nil: the shadow's track is not routed
		f.tab.Publish(routing.Route{Deployment: "m.shadow", Endpoints: shadows, Stats: f.shadowRec})
	}
	f.pub = &publisher{tab: f.tab, rec: f.rec}
	act := activator.New(f.tab, f.pub, activator.Options{Timeout: 2 * time.Second})
	f.g = New(f.tab, act, Options{HoldTimeout: 2 * time.Second, MaxBodyBytes: 4096})
	f.url = serve(t, f.g)
	return f
}

// infer sends body to m and fails the test unless the answer is the
// primary's, 200.
func (f *shadowFixture) infer(t testing.TB, c *http.Client) {
	t.Helper()
	resp, err := c.Post(f.url+"/v2/models/m/infer", "application/json", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), `"data":[1,2]`) {
		t.Errorf("= %d %s; want 200 with the primary's answer", resp.StatusCode, out)
	}
}

// settle waits until the shadow judged n mirrors and has none in flight.
func (f *shadowFixture) settle(t testing.TB, n int64) traffic.Summary {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := f.sh.Tally.Summary()
		if s.Compared+s.ShadowErrors >= n && f.sh.InFlight.Load() == 0 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("judged %d of %d mirrors, %d in flight: %+v", s.Compared+s.ShadowErrors, n, f.sh.InFlight.Load(), s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestShadowCompares(t *testing.T) {
	tests := []struct {
		name                          string
		shadow                        func(t *testing.T) *balance.Endpoint
		wantCompared, wantAgreed      int64
		wantErrors                    int64
		wantErrorIn, wantSampleReason string
	}{
		{name: "identical replica", shadow: func(t *testing.T) *balance.Endpoint { return replica(t, "s1") }, wantCompared: 4, wantAgreed: 4},
		{name: "binary tensor data", shadow: func(t *testing.T) *balance.Endpoint { return fakeReplica(t, "s1", binaryAnswer(t)) }, wantCompared: 4, wantAgreed: 4},
		{name: "changed numbers", shadow: func(t *testing.T) *balance.Endpoint { return fakeReplica(t, "s1", answering(200, changedOutput)) },
			wantCompared: 4, wantSampleReason: `output "input" differs at element 1: primary 2, shadow 2.5`},
		{name: "shadow error", shadow: func(t *testing.T) *balance.Endpoint { return fakeReplica(t, "s1", answering(500, `{"error":"boom"}`)) },
			wantErrors: 4, wantErrorIn: "shadow replica s1 answered 500: {\"error\":\"boom\"}"},
		{name: "not an infer response", shadow: func(t *testing.T) *balance.Endpoint { return fakeReplica(t, "s1", answering(200, `[1,2]`)) },
			wantErrors: 4, wantErrorIn: "not an infer response"},
		{name: "shadow gone", shadow: func(t *testing.T) *balance.Endpoint { return deadEndpoint(t, "s1") },
			wantErrors: 4, wantErrorIn: `shadow "m.shadow": 1 replicas failed to answer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newShadowFixture(t, []*balance.Endpoint{replica(t, "p1")}, []*balance.Endpoint{tt.shadow(t)}, routing.Shadow{Percent: 100, MaxConcurrency: 4})
			for i := range 4 {
				f.infer(t, http.DefaultClient)
				f.settle(t, int64(i+1)) // one at a time: nothing is dropped
			}
			s := f.settle(t, 4)
			if s.Compared != tt.wantCompared || s.Agreed != tt.wantAgreed || s.ShadowErrors != tt.wantErrors || s.Dropped != 0 {
				t.Fatalf("compared %d agreed %d errors %d dropped %d; want %d %d %d 0 (%+v)", s.Compared, s.Agreed, s.ShadowErrors, s.Dropped, tt.wantCompared, tt.wantAgreed, tt.wantErrors, s)
			}
			if tt.wantAgreed > 0 && s.Agreement != 1 {
				t.Errorf("agreement %v; want 1", s.Agreement)
			}
			if s.Compared > 0 && s.LatencyRatio <= 0 {
				t.Errorf("latency ratio %v; want > 0", s.LatencyRatio)
			}
			if !strings.Contains(s.LastShadowError, tt.wantErrorIn) {
				t.Errorf("last shadow error %q; want it to contain %q", s.LastShadowError, tt.wantErrorIn)
			}
			if tt.wantSampleReason != "" {
				if len(s.Samples) == 0 {
					t.Fatal("no sample disagreement kept")
				}
				sm := s.Samples[0]
				if !strings.HasPrefix(sm.Diff.Reason, tt.wantSampleReason) || sm.Input != body || !strings.Contains(sm.Primary, `[1,2]`) || sm.Shadow != changedOutput {
					t.Errorf("sample %+v; want input, both outputs and the reason %q", sm, tt.wantSampleReason)
				}
			}
			// The mirrors were demand on the shadow track, and ended.
			if got := f.shadowRec.Sample(time.Now()).Requests; got != 4 {
				t.Errorf("the shadow track saw %d requests; want 4", got)
			}
			if n := f.shadowRec.InFlight(); n != 0 {
				t.Errorf("%d shadow requests still in flight", n)
			}
		})
	}
}

func TestShadowNotMirrored(t *testing.T) {
	tests := []struct {
		name     string
		sh       routing.Shadow
		noTrack  bool
		wantSeen int // mirrors judged in all
	}{
		{name: "percent 0", sh: routing.Shadow{Percent: 0, MaxConcurrency: 4}},
		{name: "until passed", sh: routing.Shadow{Percent: 100, MaxConcurrency: 4, Until: time.Now().Add(-time.Second)}},
		{name: "requests judged", sh: routing.Shadow{Percent: 100, MaxConcurrency: 4, Requests: 3}, wantSeen: 3},
		{name: "track not routed", sh: routing.Shadow{Percent: 100, MaxConcurrency: 4}, noTrack: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shadows := []*balance.Endpoint{replica(t, "s1")}
			if tt.noTrack {
				shadows = nil
			}
			f := newShadowFixture(t, []*balance.Endpoint{replica(t, "p1")}, shadows, tt.sh)
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() { f.infer(t, http.DefaultClient) })
			}
			wg.Wait()
			for range 8 { // mirrors started at once may hold back more than Requests needs
				f.infer(t, http.DefaultClient)
			}
			f.settle(t, int64(tt.wantSeen))
			time.Sleep(50 * time.Millisecond) // a stray mirror would be judged by now
			s := f.sh.Tally.Summary()
			if got := s.Compared + s.ShadowErrors; got != int64(tt.wantSeen) || s.Dropped != 0 {
				t.Errorf("judged %d, dropped %d; want %d, 0", got, s.Dropped, tt.wantSeen)
			}
			if got := f.shadowRec.Sample(time.Now()).Requests; got != tt.wantSeen {
				t.Errorf("the shadow track saw %d requests; want %d", got, tt.wantSeen)
			}
		})
	}
}

// blocking is a replica handler that answers the echoed output once
// release is closed, counting the requests it got.
func blocking(got *atomic.Int32, release <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		io.Copy(io.Discard, r.Body)
		<-release
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, echoedOutput)
	}
}

func TestShadowDropsBeyondMaxConcurrency(t *testing.T) {
	var got atomic.Int32
	release := make(chan struct{})
	shadow := fakeReplica(t, "s1", blocking(&got, release))
	f := newShadowFixture(t, []*balance.Endpoint{replica(t, "p1")}, []*balance.Endpoint{shadow}, routing.Shadow{Percent: 100, MaxConcurrency: 2})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	for range 2 {
		f.infer(t, http.DefaultClient) // each holds a slot until released
	}
	for range 5 {
		start := time.Now()
		f.infer(t, http.DefaultClient)
		if d := time.Since(start); d > time.Second {
			t.Errorf("the client waited %v with the shadow's slots full", d)
		}
	}
	if s := f.sh.Tally.Summary(); s.Dropped != 5 {
		t.Errorf("dropped %d; want 5", s.Dropped)
	}
	close(release)
	s := f.settle(t, 2)
	if s.Compared != 2 || s.Agreed != 2 || got.Load() != 2 {
		t.Errorf("compared %d agreed %d, the shadow got %d; want 2 2 2", s.Compared, s.Agreed, got.Load())
	}
}

func TestShadowNoise(t *testing.T) {
	tests := []struct {
		name          string
		primaries     func(t testing.TB) []*balance.Endpoint
		wantNoise     int64
		wantAgreement float64
	}{
		{name: "one primary replica", primaries: func(t testing.TB) []*balance.Endpoint { return []*balance.Endpoint{replica(t, "p1")} }},
		{name: "two that agree", wantNoise: 6, wantAgreement: 1,
			primaries: func(t testing.TB) []*balance.Endpoint { return []*balance.Endpoint{replica(t, "p1"), replica(t, "p2")} }},
		// The same numbers in different bytes agree: the noise floor
		// compares tensors, not bytes.
		{name: "two that answer different bytes", wantNoise: 6, wantAgreement: 1, primaries: func(t testing.TB) []*balance.Endpoint {
			return []*balance.Endpoint{fakeReplica(t, "p1", answering(200, echoedOutput)), fakeReplica(t, "p2", answering(200, echoedOutput+"\n"))}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newShadowFixture(t, tt.primaries(t), []*balance.Endpoint{replica(t, "s1")}, routing.Shadow{Percent: 100, MaxConcurrency: 4})
			for i := range 6 {
				f.infer(t, http.DefaultClient)
				f.settle(t, int64(i+1))
			}
			s := f.settle(t, 6)
			if s.Compared != 6 || s.NoiseCompared != tt.wantNoise || s.NoiseAgreement != tt.wantAgreement {
				t.Errorf("compared %d, noise %d at %v; want 6, %d at %v", s.Compared, s.NoiseCompared, s.NoiseAgreement, tt.wantNoise, tt.wantAgreement)
			}
			if n := f.rec.InFlight(); n != 0 {
				t.Errorf("%d primary requests still in flight", n)
			}
		})
	}
}

func TestShadowNoiseDisagreement(t *testing.T) {
	// Two primary replicas that answer different numbers: whichever
	// answers the client, the other disagrees with it.
	f := newShadowFixture(t,
		[]*balance.Endpoint{fakeReplica(t, "p1", answering(200, echoedOutput)), fakeReplica(t, "p2", answering(200, changedOutput))},
		[]*balance.Endpoint{replica(t, "s1")}, routing.Shadow{Percent: 100, MaxConcurrency: 4})
	c := &http.Client{}
	for i := range 6 {
		resp, err := c.Post(f.url+"/v2/models/m/infer", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		f.settle(t, int64(i+1))
	}
	if s := f.settle(t, 6); s.NoiseCompared != 6 || s.NoiseAgreement != 0 {
		t.Errorf("noise %d at %v; want 6 at 0", s.NoiseCompared, s.NoiseAgreement)
	}
}

func TestShadowCloseEndsMirrors(t *testing.T) {
	var got atomic.Int32
	release := make(chan struct{})
	defer close(release)
	f := newShadowFixture(t, []*balance.Endpoint{replica(t, "p1")}, []*balance.Endpoint{fakeReplica(t, "s1", blocking(&got, release))}, routing.Shadow{Percent: 100, MaxConcurrency: 2})
	f.infer(t, http.DefaultClient)
	for got.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	f.g.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with a mirror in flight", d)
	}
	if n := f.sh.InFlight.Load(); n != 0 {
		t.Errorf("%d mirrors in flight after Close", n)
	}
	if s := f.sh.Tally.Summary(); s.Compared+s.ShadowErrors+s.Dropped != 0 {
		t.Errorf("a closing gateway judged %+v; want nothing", s)
	}
}

// TestShadowLoad is the bounded load test of issue 13: a shadow 200 ms
// slower than the primary leaves the primary's p99 where it was, since the
// client never waits for the shadow, and the copies beyond the shadow's
// concurrency limit are dropped.
func TestShadowLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const n, concurrency = 2000, 16
	sleepy := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(200 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, echoedOutput)
	}
	primary := replica(t, "p1")
	f := newShadowFixture(t, []*balance.Endpoint{primary}, []*balance.Endpoint{fakeReplica(t, "s1", sleepy)}, routing.Shadow{Percent: 100, MaxConcurrency: 4})
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	t.Cleanup(c.CloseIdleConnections)
	run := func() (p50, p99 time.Duration, slow int) {
		lat := make([]time.Duration, n)
		var next atomic.Int64
		var wg sync.WaitGroup
		for range concurrency {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < n; i = next.Add(1) - 1 {
					start := time.Now()
					f.infer(t, c)
					lat[i] = time.Since(start)
				}
			})
		}
		wg.Wait()
		slices.Sort(lat)
		slow = n - sort.Search(n, func(i int) bool { return lat[i] >= 200*time.Millisecond })
		return lat[n/2], lat[n*99/100], slow
	}
	// Without the shadow: the same deployment, route published without it.
	f.tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{primary}, Stats: f.rec})
	base50, base99, baseSlow := run()
	f.tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{primary}, Stats: f.rec, Shadow: f.sh})
	with50, with99, slow := run()
	s := f.settle(t, 1)
	t.Logf("primary p50/p99 (requests of 200ms or more): %v/%v (%d) without the shadow, %v/%v (%d) with it; mirrors compared %d, dropped %d, latency ratio %.1f",
		base50, base99, baseSlow, with50, with99, slow, s.Compared, s.Dropped, s.LatencyRatio)
	// A machine too busy for 100 ms (the race detector's, a loaded CI
	// runner's) is held to three times the p99 without the shadow.
	if limit := max(100*time.Millisecond, 3*base99); with99 >= limit {
		t.Errorf("primary p99 %v with a 200 ms shadow; want < %v: the client must not wait for the shadow", with99, limit)
	}
	// The mirrored requests are few (about 1%): clients that waited for
	// their mirrors would show as requests of 200ms or more, beyond those
	// the machine's noise makes without the shadow.
	if slow-baseSlow >= int(s.Compared)/2 {
		t.Errorf("%d requests took 200ms or more with the shadow, %d without, of %d mirrored: clients waited for the shadow", slow, baseSlow, s.Compared)
	}
	if s.Dropped == 0 || s.Compared == 0 || s.Compared+s.ShadowErrors+s.Dropped != n {
		t.Errorf("compared %d, shadow errors %d, dropped %d; want compared and dropped > 0, all adding up to %d", s.Compared, s.ShadowErrors, s.Dropped, n)
	}
}

// TestShadowJudgesItsVersionOnly: a shadow of m:2 whose track still routes
// a replica of version 1 (a new shadow rolling the track's replicas) waits
// for a replica of version 2 rather than judge the old one.
func TestShadowJudgesItsVersionOnly(t *testing.T) {
	old := fakeReplica(t, "s-old", answering(200, changedOutput))
	old.Version = "1"
	f := newShadowFixture(t, []*balance.Endpoint{replica(t, "p1")}, []*balance.Endpoint{old}, routing.Shadow{Model: "m:2", Percent: 100, MaxConcurrency: 4})
	f.infer(t, http.DefaultClient)
	time.Sleep(50 * time.Millisecond)
	if s := f.sh.Tally.Summary(); s.Compared+s.ShadowErrors != 0 {
		t.Fatalf("a mirror was judged by a replica of version 1: %+v", s)
	}
	next := replica(t, "s-new")
	next.Version = "2"
	f.tab.Publish(routing.Route{Deployment: "m.shadow", Endpoints: []*balance.Endpoint{old, next}, Stats: f.shadowRec})
	s := f.settle(t, 1)
	if s.Compared != 1 || s.Agreed != 1 {
		t.Errorf("after a replica of version 2 came: %+v; want one compared, agreeing", s)
	}
}
