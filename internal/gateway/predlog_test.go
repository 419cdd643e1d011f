package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/metadata"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/engine/httpproxy/openaitest"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/predlog"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/stats"
)

var _ PredictionLog = (*predlog.Logger)(nil)

// keptSink keeps the records a Logger writes, or blocks every Write until
// released when block is set.
type keptSink struct {
	mu    sync.Mutex
	recs  []predlog.Record
	block chan struct{}
}

func (s *keptSink) Write(recs []predlog.Record) error {
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		r.Inputs = append([]byte(nil), r.Inputs...)
		r.Outputs = append([]byte(nil), r.Outputs...)
		s.recs = append(s.recs, r)
	}
	return nil
}

func (s *keptSink) Tick(time.Time) error { return nil }
func (s *keptSink) Close() error         { return nil }

// runLog runs a real predlog.Logger over sink with ratios; stop ends it
// (waiting for its last write) and returns what the sink kept.
func runLog(t *testing.T, sink *keptSink, opts predlog.Options, ratios map[string]float64) (l *predlog.Logger, stop func() []predlog.Record) {
	t.Helper()
	l = predlog.New(sink, opts)
	l.SetSampling(ratios)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	stop = func() []predlog.Record {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Logger.Run: %v", err)
			}
		})
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return sink.recs
	}
	t.Cleanup(func() { stop() })
	return l, stop
}

// predFixture serves routes through a gateway that logs to pl.
func predFixture(t *testing.T, pl PredictionLog, routes ...routing.Route) string {
	t.Helper()
	tab := &routing.Table{}
	for _, rt := range routes {
		rt.Stats = &stats.Recorder{}
		tab.Publish(rt)
	}
	act := activator.New(tab, &publisher{tab: tab}, activator.Options{Timeout: 300 * time.Millisecond})
	g := New(tab, act, Options{HoldTimeout: 200 * time.Millisecond, MaxBodyBytes: 4096, Predictions: pl})
	return serve(t, g)
}

func postWith(t *testing.T, url, body string, header map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

const (
	testTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	testTraceparent = "00-" + testTraceID + "-00f067aa0ba902b7-01"
)

// ignoreTiming leaves out of a comparison what a test cannot know.
var ignoreTiming = cmpopts.IgnoreFields(predlog.Record{}, "Time", "Latency")

func TestPredictionLogREST(t *testing.T) {
	sink := &keptSink{}
	l, stop := runLog(t, sink, predlog.Options{}, map[string]float64{"m": 1})
	url := predFixture(t, l,
		routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{versionedReplica(t, "r1", "m:3")}},
		routing.Route{Deployment: "quiet", Endpoints: []*balance.Endpoint{replica(t, "q1")}})

	start := time.Now()
	code, answer := postWith(t, url+"/v2/models/m/infer", body, map[string]string{
		"X-Request-Id": "req-1", "Traceparent": testTraceparent, DefaultTenantHeader: "acme"})
	if code != http.StatusOK {
		t.Fatalf("infer m = %d %s", code, answer)
	}
	// A 4xx from the replica is logged too: it is the model's answer.
	bad := `{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1]}]}`
	badCode, badAnswer := postWith(t, url+"/v2/models/m/infer", bad, map[string]string{"X-Request-Id": "req-2"})
	if badCode != http.StatusBadRequest {
		t.Fatalf("bad infer m = %d %s; want 400", badCode, badAnswer)
	}
	// Not sampled: a deployment without a ratio, and requests refused
	// before they were routed.
	if code, b := postWith(t, url+"/v2/models/quiet/infer", body, nil); code == 0 {
		t.Fatalf("infer quiet = %d %s", code, b) // its replica answers 404: it serves m
	}
	if code, _ := postWith(t, url+"/v2/models/nowhere/infer", body, nil); code != http.StatusNotFound {
		t.Fatalf("infer nowhere = %d; want 404", code)
	}
	took := time.Since(start)

	got := stop()
	want := []predlog.Record{
		{Deployment: "m", ModelVersion: "3", Tenant: "acme", TraceID: testTraceID, RequestID: "req-1",
			Inputs: []byte(body), Outputs: answer, Status: http.StatusOK},
		{Deployment: "m", ModelVersion: "3", Tenant: AnonymousTenant, RequestID: "req-2",
			Inputs: []byte(bad), Outputs: badAnswer, Status: http.StatusBadRequest},
	}
	if diff := cmp.Diff(want, got, ignoreTiming); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	for _, r := range got {
		if r.Time.Before(start.Add(-time.Second)) || r.Latency <= 0 || r.Latency > took {
			t.Errorf("record %s: time %v latency %v; want a time since %v and a latency within (0, %v]", r.RequestID, r.Time, r.Latency, start, took)
		}
	}
}

// TestPredictionLogSampledByID checks that the gateway logs exactly the
// requests the log samples, by request id.
func TestPredictionLogSampledByID(t *testing.T) {
	sink := &keptSink{}
	l, stop := runLog(t, sink, predlog.Options{}, map[string]float64{"m": 0.5})
	url := predFixture(t, l, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(t, "r1")}})
	var want []string
	for i := range 40 {
		id := fmt.Sprintf("id-%d", i)
		if l.Sampled("m", id) {
			want = append(want, id)
		}
		if code, b := postWith(t, url+"/v2/models/m/infer", body, map[string]string{"X-Request-Id": id}); code != http.StatusOK {
			t.Fatalf("infer %s = %d %s", id, code, b)
		}
	}
	var got []string
	for _, r := range stop() {
		got = append(got, r.RequestID)
	}
	if len(want) == 0 || len(want) == 40 {
		t.Fatalf("%d of 40 ids sampled at 0.5: pick other ids", len(want))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("logged request ids (-want +got):\n%s", diff)
	}
}

// TestPredictionLogNeverBlocks runs requests while the log's sink is
// stuck: every request is answered at once, the log keeps no more than its
// bound and counts what it drops.
func TestPredictionLogNeverBlocks(t *testing.T) {
	reg := prometheus.NewRegistry()
	sink := &keptSink{block: make(chan struct{})}
	l, stop := runLog(t, sink, predlog.Options{MaxRecords: 2, Metrics: predlog.NewMetrics(reg, 0)}, map[string]float64{"m": 1})
	url := predFixture(t, l, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(t, "r1")}})
	const n = 20
	start := time.Now()
	for i := range n {
		if code, b := postWith(t, url+"/v2/models/m/infer", body, map[string]string{"X-Request-Id": fmt.Sprint(i)}); code != http.StatusOK {
			t.Fatalf("request %d = %d %s", i, code, b)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("%d requests took %v with the sink stuck", n, d)
	}
	if records, _ := l.Queued(); records > 2 {
		t.Errorf("the log holds %d records; want at most its MaxRecords, 2", records)
	}
	dropped := dropCount(t, reg, "m", predlog.ReasonQueueFull)
	if dropped < n-2 {
		t.Errorf("dropped (queue_full) = %v; want at least %d", dropped, n-2)
	}
	close(sink.block)
	if got := len(stop()); got+int(dropped) != n {
		t.Errorf("%d records written and %v dropped; want %d in all", got, dropped, n)
	}
}

// dropCount returns ebb_predlog_records_dropped_total{deployment, reason}
// in reg.
func dropCount(t *testing.T, reg *prometheus.Registry, deployment, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ebb_predlog_records_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["deployment"] == deployment && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no ebb_predlog_records_dropped_total{deployment=%q,reason=%q}", deployment, reason)
	return 0
}

func TestPredictionLogGRPC(t *testing.T) {
	sink := &keptSink{}
	l, stop := runLog(t, sink, predlog.Options{}, map[string]float64{"m": 1})
	f := newGRPCFixtureOpts(t, routing.Route{Deployment: "m", Version: "7", Endpoints: []*balance.Endpoint{grpcReplica(t, "r1")}}, nil,
		300*time.Millisecond, Options{Predictions: l})
	req := inferRequest(t, "m")
	req.Id = "g-1"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", testTraceparent, "ebb-tenant", "acme")
	if _, err := f.client.ModelInfer(ctx, req); err != nil {
		t.Fatal(err)
	}
	// Not logged: a model that is no deployment.
	if _, err := f.client.ModelInfer(context.Background(), inferRequest(t, "nowhere")); err == nil {
		t.Fatal("ModelInfer of an unknown model succeeded")
	}
	// A request id in metadata serves when the request has none.
	ctx = metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "g-2")
	if _, err := f.client.ModelInfer(ctx, inferRequest(t, "m")); err != nil {
		t.Fatal(err)
	}

	got := stop()
	if len(got) != 2 {
		t.Fatalf("%d records; want 2: %+v", len(got), got)
	}
	in := `{"id":"g-1","inputs":[{"name":"input","datatype":"FP32","shape":[1,2],"data":[1,2]}]}`
	if diff := cmp.Diff(in, string(got[0].Inputs)); diff != "" {
		t.Errorf("inputs, as OIP v2 REST JSON (-want +got):\n%s", diff)
	}
	var out oip.InferResponse
	if err := json.Unmarshal(got[0].Outputs, &out); err != nil {
		t.Fatalf("outputs %s are not an OIP v2 infer response: %v", got[0].Outputs, err)
	}
	if out.ModelName != "m" || len(out.Outputs) != 1 || out.Outputs[0].Name != "input" {
		t.Errorf("outputs %s; want the echo model's answer", got[0].Outputs)
	}
	want := predlog.Record{Deployment: "m", ModelVersion: "7", Tenant: "acme", TraceID: testTraceID, RequestID: "g-1", Status: http.StatusOK}
	if diff := cmp.Diff(want, got[0], ignoreTiming, cmpopts.IgnoreFields(predlog.Record{}, "Inputs", "Outputs")); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	if got[0].Latency <= 0 || got[0].Time.IsZero() {
		t.Errorf("record time %v, latency %v; want both set", got[0].Time, got[0].Latency)
	}
	if got[1].RequestID != "g-2" || !strings.Contains(string(got[1].Inputs), `"inputs"`) {
		t.Errorf("second record: id %q inputs %s; want id g-2 from metadata", got[1].RequestID, got[1].Inputs)
	}
}

func TestPredictionLogOpenAI(t *testing.T) {
	sink := &keptSink{}
	l, stop := runLog(t, sink, predlog.Options{}, map[string]float64{"alpha": 1})
	url := predFixture(t, l, openAIRoute("alpha", openAIReplica(t, "alpha-1", "alpha", openaitest.Options{Name: "up-alpha"})))

	plain := `{"model":"alpha","prompt":"one two"}`
	code, answer := postWith(t, url+"/v1/completions", plain, map[string]string{"X-Request-Id": "o-1"})
	if code != http.StatusOK {
		t.Fatalf("completion = %d %s", code, answer)
	}
	streamed := `{"model":"alpha","stream":true,"prompt":"one two three"}`
	code, events := postWith(t, url+"/openai/v1/completions", streamed, map[string]string{"X-Request-Id": "o-2", DefaultTenantHeader: "acme"})
	if code != http.StatusOK {
		t.Fatalf("streamed completion = %d %s", code, events)
	}
	var words int
	for sc := bufio.NewScanner(strings.NewReader(string(events))); sc.Scan(); {
		if strings.HasPrefix(sc.Text(), "data: {") {
			words++
		}
	}
	if words != 3 {
		t.Fatalf("streamed answer has %d chunks; want 3:\n%s", words, events)
	}

	got := stop()
	want := []predlog.Record{
		{Deployment: "alpha", Tenant: AnonymousTenant, RequestID: "o-1", Inputs: []byte(plain), Outputs: answer, Status: http.StatusOK},
		{Deployment: "alpha", Tenant: "acme", RequestID: "o-2", Inputs: []byte(streamed), Outputs: events, Status: http.StatusOK},
	}
	if diff := cmp.Diff(want, got, ignoreTiming); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

// TestPredictionLogStreamCapture checks the bound on a streamed answer's
// capture.
func TestPredictionLogStreamCapture(t *testing.T) {
	l := &openAILog{}
	piece := make([]byte, 64<<10)
	for range 40 { // 2.5 MiB
		l.capture(piece)
	}
	if !l.streamed || len(l.out) != maxStreamCapture {
		t.Errorf("captured %d bytes (streamed %v); want %d", len(l.out), l.streamed, maxStreamCapture)
	}
}

// BenchmarkStageServerPredictionLog is BenchmarkStageServer with a
// request id, without a prediction log (off) and with one that does not
// sample the deployment (unsampled): the cost of the hook to every
// request of a deployment that logs nothing.
func BenchmarkStageServerPredictionLog(b *testing.B) {
	for _, tt := range []struct {
		name string
		on   bool
	}{{"off", false}, {"unsampled", true}} {
		b.Run(tt.name, func(b *testing.B) {
			opts := Options{Metrics: NewMetrics(prometheus.NewRegistry()), HoldTimeout: 200 * time.Millisecond, MaxBodyBytes: 4096}
			if tt.on {
				l := predlog.New(&keptSink{}, predlog.Options{})
				l.SetSampling(map[string]float64{"other": 1})
				opts.Predictions = l
			}
			tab := &routing.Table{}
			tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(b, "r1")}, Stats: &stats.Recorder{}})
			act := activator.New(tab, &publisher{tab: tab}, activator.Options{Timeout: 300 * time.Millisecond})
			benchClient(b, serve(b, New(tab, act, opts)), "X-Request-Id", "bench-1")
		})
	}
}
