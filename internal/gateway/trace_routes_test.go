package gateway

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/predlog"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// The trace of OpenAI API requests and of scattered requests: the span
// tree the gateway records and the trace context each replica gets.

const (
	routeClientTP    = "00-0ebb0000000000000000000000000002-0ebb000000000002-01"
	routeClientTrace = "0ebb0000000000000000000000000002"
	routeClientSpan  = "0ebb000000000002"
)

// seenAll is what a stand-in replica saw of each request's traceparent.
type seenAll struct {
	mu  sync.Mutex
	tps []string
}

func (s *seenAll) add(tp string) {
	s.mu.Lock()
	s.tps = append(s.tps, tp)
	s.mu.Unlock()
}

func (s *seenAll) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tps)
}

// keptLog is a PredictionLog that samples and keeps every record.
type keptLog struct {
	mu   sync.Mutex
	recs []predlog.Record
}

func (l *keptLog) Sampled(string, string) bool { return true }

func (l *keptLog) Log(rec predlog.Record) {
	l.mu.Lock()
	l.recs = append(l.recs, rec)
	l.mu.Unlock()
}

func (l *keptLog) traceIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for _, r := range l.recs {
		ids = append(ids, r.TraceID)
	}
	return ids
}

// tracedGateway serves tab through a gateway whose Tracer samples as
// sampler does (nil: no Tracer) into the returned recorder.
func tracedGateway(t *testing.T, tab *routing.Table, sampler sdktrace.Sampler, pl PredictionLog) (string, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	opts := Options{HoldTimeout: time.Second, MaxBodyBytes: 1 << 16, Predictions: pl}
	if sampler != nil {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithSpanProcessor(rec))
		opts.Tracer = tp.Tracer(telemetry.TracerName)
	}
	act := activator.New(tab, &publisher{tab: tab}, activator.Options{Timeout: time.Second, Tracer: opts.Tracer})
	g := New(tab, act, opts)
	t.Cleanup(g.Close)
	return serve(t, g), rec
}

// spanView is what the tests compare of a span.
type spanView struct {
	Name   string
	Parent string // the parent's name; the remote parent's span id
	Kind   trace.SpanKind
	Attrs  map[string]string
}

// viewSpans returns the spans rec ended, their parents by name, sorted.
func viewSpans(rec *tracetest.SpanRecorder, keep ...string) []spanView {
	ended := rec.Ended()
	byID := map[trace.SpanID]string{}
	for _, s := range ended {
		byID[s.SpanContext().SpanID()] = s.Name()
	}
	var out []spanView
	for _, s := range ended {
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			if len(keep) == 0 || slices.Contains(keep, string(kv.Key)) {
				attrs[string(kv.Key)] = kv.Value.Emit()
			}
		}
		parent := byID[s.Parent().SpanID()]
		if s.Parent().IsRemote() {
			parent = s.Parent().SpanID().String()
		}
		out = append(out, spanView{Name: s.Name(), Parent: parent, Kind: s.SpanKind(), Attrs: attrs})
	}
	slices.SortFunc(out, func(a, b spanView) int {
		return strings.Compare(a.Name+a.Attrs["ebb.scatter.segment"], b.Name+b.Attrs["ebb.scatter.segment"])
	})
	return out
}

// waitSpans waits until rec has ended n spans.
func waitSpans(t *testing.T, rec *tracetest.SpanRecorder, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(rec.Ended()) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d spans ended; want %d", len(rec.Ended()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// openAIStandIn answers OpenAI requests, whole or as a stream of events,
// and notes their traceparent.
func openAIStandIn(t *testing.T, seen *seenAll) *balance.Endpoint {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.add(r.Header.Get("traceparent"))
		body, _ := io.ReadAll(r.Body)
		if !bytes.Contains(body, []byte(`"stream":true`)) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"object":"chat.completion","choices":[{"message":{"content":"hi"}}]}`))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range []string{`{"choices":[{"delta":{"content":"h"}}]}`, `{"choices":[{"delta":{"content":"i"}}]}`, "[DONE]"} {
			io.WriteString(w, "data: "+ev+"\n\n")
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return balance.NewEndpoint("r1", srv.URL)
}

// TestTraceOpenAI checks the trace of an OpenAI API request, answered
// whole and streamed: an ebb.request server span under the client's
// traceparent with the OIP path's attributes, ending with the stream; an
// ebb.proxy under it whose context the replica gets; the trace id in the
// prediction log. Without a Tracer the client's traceparent passes as it
// came.
func TestTraceOpenAI(t *testing.T) {
	for _, stream := range []bool{false, true} {
		name := map[bool]string{false: "whole", true: "stream"}[stream]
		body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
		if stream {
			body = `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`
		}
		post := func(t *testing.T, url string) {
			t.Helper()
			req, _ := http.NewRequest(http.MethodPost, url+"/openai/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("traceparent", routeClientTP)
			req.Header.Set("X-Request-Id", "req-1")
			req.Header.Set(DefaultTenantHeader, "acme")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("= %d %s", resp.StatusCode, out)
			}
		}
		t.Run(name, func(t *testing.T) {
			seen := &seenAll{}
			tab := &routing.Table{}
			tab.Publish(routing.Route{Deployment: "chat", Protocol: serving.ProtocolOpenAI, Endpoints: []*balance.Endpoint{openAIStandIn(t, seen)}})
			pl := &keptLog{}
			url, rec := tracedGateway(t, tab, sdktrace.ParentBased(sdktrace.NeverSample()), pl)
			post(t, url)
			waitSpans(t, rec, 2)
			want := []spanView{
				{Name: telemetry.SpanProxy, Parent: telemetry.SpanRequest, Kind: trace.SpanKindClient,
					Attrs: map[string]string{"ebb.replica": "r1", "http.response.status_code": "200"}},
				{Name: telemetry.SpanRequest, Parent: routeClientSpan, Kind: trace.SpanKindServer,
					Attrs: map[string]string{"ebb.deployment": "chat", "ebb.tenant": "acme", "ebb.request.id": "req-1", "http.response.status_code": "200"}},
			}
			if diff := cmp.Diff(want, viewSpans(rec)); diff != "" {
				t.Errorf("spans (-want +got):\n%s", diff)
			}
			var proxy trace.SpanContext
			for _, s := range rec.Ended() {
				if s.Name() == telemetry.SpanProxy {
					proxy = s.SpanContext()
				}
				if s.SpanContext().TraceID().String() != routeClientTrace {
					t.Errorf("span %s in trace %s; want the client's %s", s.Name(), s.SpanContext().TraceID(), routeClientTrace)
				}
			}
			if got := seen.all(); len(got) != 1 || got[0] != "00-"+routeClientTrace+"-"+proxy.SpanID().String()+"-01" {
				t.Errorf("the replica got traceparent %q; want the ebb.proxy span's, %s", got, proxy.SpanID())
			}
			if got := pl.traceIDs(); !slices.Equal(got, []string{routeClientTrace}) {
				t.Errorf("prediction log trace ids %q; want the client's", got)
			}
		})
		t.Run(name+", tracing off", func(t *testing.T) {
			seen := &seenAll{}
			tab := &routing.Table{}
			tab.Publish(routing.Route{Deployment: "chat", Protocol: serving.ProtocolOpenAI, Endpoints: []*balance.Endpoint{openAIStandIn(t, seen)}})
			url, _ := tracedGateway(t, tab, nil, nil)
			post(t, url)
			if got := seen.all(); !slices.Equal(got, []string{routeClientTP}) {
				t.Errorf("the replica got traceparent %q; want the client's as it came", got)
			}
		})
	}
}

// scatterStandIn is an echo replica that notes each request's
// traceparent.
func scatterStandIn(t *testing.T, id string, seen *seenAll) *balance.Endpoint {
	m, err := echo.Load("")
	if err != nil {
		t.Fatal(err)
	}
	echoed := server.New("m", m, server.Options{ReplicaID: id})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/infer") {
			seen.add(r.Header.Get("traceparent"))
		}
		echoed.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return balance.NewEndpoint(id, srv.URL)
}

// TestTraceScatter checks the trace of a scattered request: under its
// ebb.request, one ebb.scatter.segment per segment with its index, rows,
// replica and status, each with an ebb.proxy whose context its replica
// gets; a request the sampler leaves out sends its unsampled context and
// records nothing; without a Tracer each segment carries the client's
// traceparent as it came.
func TestTraceScatter(t *testing.T) {
	tests := []struct {
		name    string
		sampler sdktrace.Sampler
		header  bool
	}{
		{name: "sampled", sampler: sdktrace.ParentBased(sdktrace.AlwaysSample()), header: true},
		{name: "left out", sampler: sdktrace.ParentBased(sdktrace.NeverSample())},
		{name: "tracing off", header: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := &seenAll{}
			tab := &routing.Table{}
			tab.Publish(routing.Route{Deployment: "m", Scatter: &serving.Scatter{SegmentRows: 2},
				Endpoints: []*balance.Endpoint{scatterStandIn(t, "r1", seen), scatterStandIn(t, "r2", seen)}})
			url, rec := tracedGateway(t, tab, tt.sampler, nil)
			body, _, _ := rowsRequest(t, 5, false) // segments of 2, 2 and 1 rows
			req, _ := http.NewRequest(http.MethodPost, url+"/v2/models/m/infer", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if tt.header {
				req.Header.Set("traceparent", routeClientTP)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get(segmentsHeader) != "3" {
				t.Fatalf("= %d, %s segments: %.300s", resp.StatusCode, resp.Header.Get(segmentsHeader), out)
			}
			tps := seen.all()
			if len(tps) != 3 {
				t.Fatalf("the replicas got %d requests; want 3", len(tps))
			}
			switch tt.name {
			case "tracing off":
				for _, tp := range tps {
					if tp != routeClientTP {
						t.Errorf("a segment carried traceparent %q; want the client's as it came", tp)
					}
				}
				return
			case "left out":
				var trace0 string
				for _, tp := range tps {
					sc, ok := parseTP(tp)
					if !ok || sc.IsSampled() {
						t.Errorf("a segment carried traceparent %q; want a valid unsampled one", tp)
					}
					if trace0 == "" {
						trace0 = sc.TraceID().String()
					} else if sc.TraceID().String() != trace0 {
						t.Errorf("segments carried traces %s and %s; want the request's one", trace0, sc.TraceID())
					}
				}
				if n := len(rec.Ended()); n != 0 {
					t.Errorf("%d spans recorded for a request left out", n)
				}
				return
			}
			waitSpans(t, rec, 7)
			want := []spanView{
				{Name: telemetry.SpanProxy, Parent: telemetry.SpanSegment, Kind: trace.SpanKindClient},
				{Name: telemetry.SpanProxy, Parent: telemetry.SpanSegment, Kind: trace.SpanKindClient},
				{Name: telemetry.SpanProxy, Parent: telemetry.SpanSegment, Kind: trace.SpanKindClient},
				{Name: telemetry.SpanRequest, Parent: routeClientSpan, Kind: trace.SpanKindServer,
					Attrs: map[string]string{"ebb.deployment": "m", "http.response.status_code": "200"}},
				{Name: telemetry.SpanSegment, Parent: telemetry.SpanRequest, Kind: trace.SpanKindInternal,
					Attrs: map[string]string{"ebb.deployment": "m", "ebb.scatter.segment": "0", "ebb.scatter.rows": "2", "http.response.status_code": "200"}},
				{Name: telemetry.SpanSegment, Parent: telemetry.SpanRequest, Kind: trace.SpanKindInternal,
					Attrs: map[string]string{"ebb.deployment": "m", "ebb.scatter.segment": "1", "ebb.scatter.rows": "2", "http.response.status_code": "200"}},
				{Name: telemetry.SpanSegment, Parent: telemetry.SpanRequest, Kind: trace.SpanKindInternal,
					Attrs: map[string]string{"ebb.deployment": "m", "ebb.scatter.segment": "2", "ebb.scatter.rows": "1", "http.response.status_code": "200"}},
			}
			got := viewSpans(rec, "ebb.deployment", "ebb.scatter.segment", "ebb.scatter.rows", "http.response.status_code")
			for i := range got {
				if got[i].Name == telemetry.SpanProxy {
					got[i].Attrs = nil // the replica each went to varies
				}
			}
			if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b map[string]string) bool { return cmp.Equal(a, b) || len(a)+len(b) == 0 })); diff != "" {
				t.Errorf("spans (-want +got):\n%s", diff)
			}
			// Each segment's replica got its own ebb.proxy's context, and
			// a segment names the replica that answered it.
			proxies, replicaOf := map[string]bool{}, map[string]string{}
			for _, s := range rec.Ended() {
				if s.SpanContext().TraceID().String() != routeClientTrace {
					t.Errorf("span %s in trace %s; want the client's", s.Name(), s.SpanContext().TraceID())
				}
				switch s.Name() {
				case telemetry.SpanProxy:
					proxies[s.SpanContext().SpanID().String()] = true
					for _, kv := range s.Attributes() {
						if kv.Key == telemetry.AttrReplica {
							replicaOf[s.Parent().SpanID().String()] = kv.Value.AsString()
						}
					}
				}
			}
			for _, s := range rec.Ended() {
				if s.Name() != telemetry.SpanSegment {
					continue
				}
				var rep string
				for _, kv := range s.Attributes() {
					if kv.Key == telemetry.AttrReplica {
						rep = kv.Value.AsString()
					}
				}
				if want := replicaOf[s.SpanContext().SpanID().String()]; rep == "" || rep != want {
					t.Errorf("segment span names replica %q; its ebb.proxy went to %q", rep, want)
				}
			}
			for _, tp := range tps {
				sc, ok := parseTP(tp)
				if !ok || !sc.IsSampled() || !proxies[sc.SpanID().String()] {
					t.Errorf("a segment carried traceparent %q; want one of its ebb.proxy spans, sampled", tp)
				}
			}
		})
	}
}
