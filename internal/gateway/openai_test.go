package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/engine/httpproxy"
	"github.com/ebb-ml/ebb/internal/engine/httpproxy/openaitest"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
)

// openAIReplica starts an OpenAI test server behind a real http-engine
// replica of deployment (protocol openai) and returns the replica's
// endpoint.
func openAIReplica(t testing.TB, id, deployment string, opts openaitest.Options) *balance.Endpoint {
	t.Helper()
	up := httptest.NewServer(openaitest.Handler(opts))
	t.Cleanup(up.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	r, err := httpproxy.New(httpproxy.Options{
		Upstream: up.URL, ReplicaID: id, Deployment: deployment, Protocol: serving.ProtocolOpenAI,
		Logger: slog.New(slog.DiscardHandler), OnReady: func(time.Time, time.Time) { close(ready) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- r.Run(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-ran })
	select {
	case <-ready:
	case err := <-ran:
		t.Fatalf("replica of %s: %v", deployment, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("replica of %s not ready in 10s", deployment)
	}
	return balance.NewEndpoint(id, "http://"+ln.Addr().String())
}

type openAIFixture struct {
	tab *routing.Table
	pub *publisher
	rec map[string]*stats.Recorder
	g   *Gateway
	url string // the base URL of the gateway's front server
	met *Metrics
}

// newOpenAIFixture serves routes through a gateway with Auth a (nil: open)
// and a 4 KiB body limit; a deployment woken by the activator gets pub.eps.
func newOpenAIFixture(t testing.TB, a Authenticator, routes ...routing.Route) *openAIFixture {
	t.Helper()
	f := &openAIFixture{tab: &routing.Table{}, rec: map[string]*stats.Recorder{}}
	for _, rt := range routes {
		rt.Stats = &stats.Recorder{}
		f.rec[rt.Deployment] = rt.Stats
		f.tab.Publish(rt)
	}
	f.pub = &publisher{tab: f.tab}
	act := activator.New(f.tab, wakeAs{f}, activator.Options{Timeout: 2 * time.Second})
	f.met = NewMetrics(prometheus.NewRegistry())
	f.g = New(f.tab, act, Options{Metrics: f.met, HoldTimeout: 200 * time.Millisecond, MaxBodyBytes: 4096, Auth: a})
	f.url = serve(t, f.g)
	return f
}

// wakeAs routes pub.eps for a woken deployment, keeping its protocol and
// recorder.
type wakeAs struct{ f *openAIFixture }

func (w wakeAs) Wake(name string) {
	old := w.f.tab.Lookup(name)
	if w.f.pub.eps == nil || old == nil {
		return
	}
	rt := *old
	rt.Endpoints = w.f.pub.eps
	w.f.tab.Publish(rt)
}

func (f *openAIFixture) post(t *testing.T, path, token, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (f *openAIFixture) get(t *testing.T, path, token string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.url+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func openAIRoute(name string, eps ...*balance.Endpoint) routing.Route {
	return routing.Route{Deployment: name, Protocol: serving.ProtocolOpenAI, Endpoints: eps}
}

// answer is what the tests read of an OpenAI answer.
type answer struct {
	Model       string `json:"model"`
	Fingerprint string `json:"system_fingerprint"`
	Choices     []struct {
		Text    string `json:"text"`
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
	} `json:"choices"`
	Data []struct {
		Embedding []float64 `json:"embedding"`
	} `json:"data"`
	Error *struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func decodeAnswer(t *testing.T, b []byte) answer {
	t.Helper()
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("answer %s is not JSON: %v", b, err)
	}
	return a
}

func TestOpenAIRoutesByModel(t *testing.T) {
	alpha := openAIReplica(t, "alpha-1", "alpha", openaitest.Options{Name: "up-alpha", Models: []string{"alpha"}})
	beta := openAIReplica(t, "beta-1", "beta", openaitest.Options{Name: "up-beta", Models: []string{"beta"}})
	f := newOpenAIFixture(t, nil, openAIRoute("alpha", alpha), openAIRoute("beta", beta))
	tests := []struct {
		path, model, body string
		want              func(answer) string
	}{
		{"/openai/v1/chat/completions", "alpha", `{"model":"alpha","messages":[{"role":"user","content":"hello there"}]}`,
			func(a answer) string { return a.Choices[0].Message.Content }},
		{"/openai/v1/chat/completions", "beta", `{"model":"beta","messages":[{"role":"user","content":"hello there"}]}`,
			func(a answer) string { return a.Choices[0].Message.Content }},
		{"/v1/chat/completions", "beta", `{"messages":[{"role":"user","content":"hello there"}],"model":"beta"}`,
			func(a answer) string { return a.Choices[0].Message.Content }},
		{"/openai/v1/completions", "alpha", `{"model":"alpha","prompt":"hello there"}`,
			func(a answer) string { return a.Choices[0].Text }},
		{"/v1/completions", "beta", `{"model":"beta","prompt":"hello there"}`,
			func(a answer) string { return a.Choices[0].Text }},
		{"/openai/v1/embeddings", "alpha", `{"model":"alpha","input":"hello there"}`,
			func(a answer) string { b, _ := json.Marshal(a.Data[0].Embedding); return string(b) }},
		{"/v1/embeddings", "beta", `{"model":"beta","input":"hello there"}`,
			func(a answer) string { b, _ := json.Marshal(a.Data[0].Embedding); return string(b) }},
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+tt.model, func(t *testing.T) {
			resp, b := f.post(t, tt.path, "", tt.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("= %d %s; want 200", resp.StatusCode, b)
			}
			a := decodeAnswer(t, b)
			if a.Fingerprint != "up-"+tt.model || a.Model != tt.model {
				t.Errorf("answered by %q for model %q; want up-%s for %s", a.Fingerprint, a.Model, tt.model, tt.model)
			}
			if got := resp.Header.Get("Ebb-Replica"); got != tt.model+"-1" {
				t.Errorf("Ebb-Replica = %q; want %s-1", got, tt.model)
			}
			want := "hello there"
			if strings.Contains(tt.path, "embeddings") {
				want = "[5,5]"
			}
			if got := tt.want(a); got != want {
				t.Errorf("answer %q; want %q", got, want)
			}
		})
	}
	for name, rec := range f.rec {
		if n := rec.InFlight(); n != 0 {
			t.Errorf("%s: recorder in flight after the requests = %d; want 0", name, n)
		}
	}
	if got := testutil.ToFloat64(f.met.requests.WithLabelValues("alpha", "200", "")); got != 3 {
		t.Errorf("ebb_gateway_requests_total{alpha,200} = %v; want 3", got)
	}
}

func TestOpenAIErrors(t *testing.T) {
	alpha := openAIReplica(t, "alpha-1", "alpha", openaitest.Options{Name: "up-alpha", Models: []string{"alpha"}})
	// A deployment whose server knows the model by another name, and
	// whose replica was not told: the server's own error passes.
	misnamed := openAIReplica(t, "misnamed-1", "misnamed", openaitest.Options{Name: "up-misnamed", Models: []string{"org/model"}})
	tests := []struct {
		name         string
		route        routing.Route
		method, path string
		body         string
		wantStatus   int
		wantType     string
		wantCode     string
		wantParam    string
		wantIn       string
		wantRetry    bool
	}{
		{name: "unknown model", route: openAIRoute("alpha", alpha), method: "POST", path: "/openai/v1/chat/completions",
			body: `{"model":"gpt-4","messages":[]}`, wantStatus: 404, wantType: "invalid_request_error", wantCode: "model_not_found", wantParam: "model", wantIn: `"gpt-4" does not exist`},
		{name: "an OIP deployment", route: routing.Route{Deployment: "alpha", Endpoints: []*balance.Endpoint{alpha}}, method: "POST", path: "/v1/completions",
			body: `{"model":"alpha","prompt":"x"}`, wantStatus: 404, wantCode: "model_not_found", wantIn: "serves the Open Inference Protocol, not the OpenAI API"},
		{name: "no model", route: openAIRoute("alpha", alpha), method: "POST", path: "/openai/v1/completions",
			body: `{"prompt":"x"}`, wantStatus: 400, wantType: "invalid_request_error", wantParam: "model", wantIn: `has no "model"`},
		{name: "not JSON", route: openAIRoute("alpha", alpha), method: "POST", path: "/openai/v1/completions",
			body: `model=alpha`, wantStatus: 400, wantType: "invalid_request_error", wantIn: "not a JSON object"},
		{name: "body too large", route: openAIRoute("alpha", alpha), method: "POST", path: "/openai/v1/completions",
			body: `{"model":"alpha","prompt":"` + strings.Repeat("x", 5000) + `"}`, wantStatus: 413, wantType: "invalid_request_error", wantIn: "exceeds the limit of 4096 bytes (--max-body-bytes)"},
		{name: "deployment cannot start", route: routing.Route{Deployment: "alpha", Protocol: serving.ProtocolOpenAI, Failure: "CUDA out of memory"},
			method: "POST", path: "/openai/v1/chat/completions", body: `{"model":"alpha","messages":[]}`,
			wantStatus: 503, wantType: "service_unavailable_error", wantIn: "CUDA out of memory", wantRetry: true},
		{name: "scaled to zero", route: routing.Route{Deployment: "alpha", Protocol: serving.ProtocolOpenAI, ScaledToZero: true},
			method: "POST", path: "/openai/v1/chat/completions", body: `{"model":"alpha","messages":[]}`,
			wantStatus: 503, wantType: "service_unavailable_error", wantCode: codeScaledToZero, wantIn: "scaled to zero"},
		{name: "the server's own error", route: openAIRoute("misnamed", misnamed), method: "POST", path: "/openai/v1/chat/completions",
			body: `{"model":"misnamed","messages":[{"role":"user","content":"x"}]}`, wantStatus: 404, wantType: "invalid_request_error", wantCode: "model_not_found", wantIn: "The model `misnamed` does not exist."},
		{name: "a path that is not the API", route: openAIRoute("alpha", alpha), method: "GET", path: "/openai/v1/chat/completions",
			wantStatus: 404, wantType: "not_found", wantIn: "is not part of the OpenAI API"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newOpenAIFixture(t, nil, tt.route)
			var resp *http.Response
			var b []byte
			if tt.method == "GET" {
				resp, b = f.get(t, tt.path, "")
			} else {
				resp, b = f.post(t, tt.path, "", tt.body)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("= %d %s; want %d", resp.StatusCode, b, tt.wantStatus)
			}
			a := decodeAnswer(t, b)
			if a.Error == nil {
				t.Fatalf("body %s; want an OpenAI error", b)
			}
			e := a.Error
			if !strings.Contains(e.Message, tt.wantIn) {
				t.Errorf("message %q; want it to contain %q", e.Message, tt.wantIn)
			}
			if tt.wantType != "" && e.Type != tt.wantType {
				t.Errorf("type %q; want %q", e.Type, tt.wantType)
			}
			if tt.wantCode != "" && (e.Code == nil || *e.Code != tt.wantCode) {
				t.Errorf("code %v; want %q", e.Code, tt.wantCode)
			}
			if tt.wantParam != "" && (e.Param == nil || *e.Param != tt.wantParam) {
				t.Errorf("param %v; want %q", e.Param, tt.wantParam)
			}
			if got := resp.Header.Get("Retry-After") != ""; got != tt.wantRetry {
				t.Errorf("Retry-After %q; want one: %v", resp.Header.Get("Retry-After"), tt.wantRetry)
			}
			for name, rec := range f.rec {
				if n := rec.InFlight(); n != 0 {
					t.Errorf("%s: recorder in flight = %d; want 0", name, n)
				}
			}
		})
	}
}

// TestOpenAIHoldsWhileCold sends a request to a deployment at zero: it
// wakes the deployment, waits, and is answered once a replica is routed.
func TestOpenAIHoldsWhileCold(t *testing.T) {
	f := newOpenAIFixture(t, nil, openAIRoute("alpha"))
	f.pub.eps = []*balance.Endpoint{openAIReplica(t, "alpha-1", "alpha", openaitest.Options{Name: "up-alpha"})}
	resp, b := f.post(t, "/openai/v1/chat/completions", "", `{"model":"alpha","messages":[{"role":"user","content":"wake up"}]}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("cold request = %d %s; want 200 once a replica is routed", resp.StatusCode, b)
	}
	if a := decodeAnswer(t, b); a.Choices[0].Message.Content != "wake up" {
		t.Errorf("answer %s; want the upstream's echo", b)
	}
	if n := f.rec["alpha"].InFlight(); n != 0 {
		t.Errorf("recorder in flight = %d; want 0", n)
	}
}

// TestOpenAIStreamsUnbuffered checks that each chunk of a stream reaches
// the client before the next is sent: the upstream holds every chunk
// after the first until the client has read the one before.
func TestOpenAIStreamsUnbuffered(t *testing.T) {
	seen := make(chan int, 16) // chunk i read by the client
	late := make(chan int, 16) // chunk i sent without the client having read i-1
	opts := openaitest.Options{Name: "up-alpha", BeforeChunk: func(ctx context.Context, i int) {
		select {
		case got := <-seen:
			if got != i-1 {
				late <- i
			}
		case <-time.After(5 * time.Second):
			late <- i
		case <-ctx.Done():
		}
	}}
	f := newOpenAIFixture(t, nil, openAIRoute("alpha", openAIReplica(t, "alpha-1", "alpha", opts)))
	for _, path := range []string{"/openai/v1/chat/completions", "/v1/completions"} {
		t.Run(path, func(t *testing.T) {
			body := `{"model":"alpha","stream":true,"prompt":"one two three four","messages":[{"role":"user","content":"one two three four"}]}`
			req, _ := http.NewRequest(http.MethodPost, f.url+path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("= %d %q %s; want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
			var words []string
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				data, ok := strings.CutPrefix(sc.Text(), "data: ")
				if !ok {
					continue
				}
				if data == "[DONE]" {
					break
				}
				var chunk struct {
					Choices []struct {
						Text  string `json:"text"`
						Delta struct {
							Content string `json:"content"`
						} `json:"delta"`
					} `json:"choices"`
				}
				if err := json.Unmarshal([]byte(data), &chunk); err != nil {
					t.Fatalf("chunk %q: %v", data, err)
				}
				words = append(words, chunk.Choices[0].Text+chunk.Choices[0].Delta.Content)
				seen <- len(words) - 1
			}
			if want := []string{"one", "two", "three", "four"}; !cmp.Equal(words, want) {
				t.Errorf("streamed words %q; want %q", words, want)
			}
			select {
			case i := <-late:
				t.Errorf("chunk %d was sent before the client had read chunk %d: the stream is buffered on the way", i, i-1)
			default:
			}
			for len(seen) > 0 {
				<-seen
			}
		})
	}
}

func TestOpenAIModels(t *testing.T) {
	tokens := &tokenMap{m: map[string]auth.Token{}}
	v := auth.NewVerifier(tokens, 0, nil)
	alphaOnly := tokens.add(t, "predict:alpha")
	routes := []routing.Route{openAIRoute("beta"), openAIRoute("alpha"), {Deployment: "oip"}}
	open := newOpenAIFixture(t, nil, routes...)
	closed := newOpenAIFixture(t, v, routes...)
	list := func(f *openAIFixture, token string) (int, []string) {
		resp, b := f.get(t, "/openai/v1/models", token)
		var l struct {
			Object string `json:"object"`
			Data   []struct {
				ID     string `json:"id"`
				Object string `json:"object"`
			} `json:"data"`
		}
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatalf("model list %s: %v", b, err)
		}
		ids := []string{}
		for _, d := range l.Data {
			ids = append(ids, d.ID)
			if d.Object != "model" {
				t.Errorf("entry %q has object %q; want model", d.ID, d.Object)
			}
		}
		if resp.StatusCode == http.StatusOK && l.Object != "list" {
			t.Errorf("object %q; want list", l.Object)
		}
		return resp.StatusCode, ids
	}
	if code, ids := list(open, ""); code != 200 || !cmp.Equal(ids, []string{"alpha", "beta"}) {
		t.Errorf("open list = %d %q; want 200 [alpha beta]", code, ids)
	}
	if code, ids := list(closed, alphaOnly); code != 200 || !cmp.Equal(ids, []string{"alpha"}) {
		t.Errorf("list with predict:alpha = %d %q; want 200 [alpha]", code, ids)
	}
	if code, _ := list(closed, ""); code != http.StatusUnauthorized {
		t.Errorf("list without a token = %d; want 401", code)
	}
	for path, want := range map[string]int{"/openai/v1/models/alpha": 200, "/openai/v1/models/oip": 404, "/openai/v1/models/nope": 404} {
		if resp, b := open.get(t, path, ""); resp.StatusCode != want {
			t.Errorf("GET %s = %d %s; want %d", path, resp.StatusCode, b, want)
		}
	}
	if open.tab.Lookup("alpha").Endpoints != nil || len(open.pub.eps) != 0 {
		t.Error("listing woke a deployment")
	}
}

func TestOpenAIAuth(t *testing.T) {
	tokens := &tokenMap{m: map[string]auth.Token{}}
	v := auth.NewVerifier(tokens, 0, nil)
	alphaOnly, admin := tokens.add(t, "predict:alpha"), tokens.add(t, "admin")
	f := newOpenAIFixture(t, v,
		openAIRoute("alpha", openAIReplica(t, "alpha-1", "alpha", openaitest.Options{Name: "up-alpha"})),
		openAIRoute("beta", openAIReplica(t, "beta-1", "beta", openaitest.Options{Name: "up-beta"})))
	tests := []struct {
		name, token, model string
		want               int
		wantType           string
	}{
		{"no token", "", "alpha", 401, "authentication_error"},
		{"bad token", "ebb_nope", "alpha", 401, "authentication_error"},
		{"scope of the routed deployment", alphaOnly, "alpha", 200, ""},
		{"scope of another deployment", alphaOnly, "beta", 403, "permission_error"},
		{"admin", admin, "beta", 200, ""},
		{"unknown model without its scope", alphaOnly, "gamma", 403, "permission_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := f.post(t, "/v1/chat/completions", tt.token, `{"model":"`+tt.model+`","messages":[{"role":"user","content":"hi"}]}`)
			if resp.StatusCode != tt.want {
				t.Fatalf("= %d %s; want %d", resp.StatusCode, b, tt.want)
			}
			if tt.wantType != "" {
				if a := decodeAnswer(t, b); a.Error == nil || a.Error.Type != tt.wantType {
					t.Errorf("body %s; want an OpenAI error of type %s", b, tt.wantType)
				}
			}
			if (tt.want == 401) != (resp.Header.Get("WWW-Authenticate") != "") {
				t.Errorf("WWW-Authenticate %q with status %d", resp.Header.Get("WWW-Authenticate"), tt.want)
			}
		})
	}
}

// TestOIPToOpenAIDeployment checks that OIP v2 requests for a deployment
// that serves the OpenAI API are refused, over REST and gRPC, without
// waking it.
func TestOIPToOpenAIDeployment(t *testing.T) {
	f := newOpenAIFixture(t, nil, openAIRoute("alpha"))
	f.pub.eps = []*balance.Endpoint{deadEndpoint(t, "never")}
	resp, b := f.post(t, "/v2/models/alpha/infer", "", body)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "serves the OpenAI API") {
		t.Errorf("REST infer = %d %s; want 404 saying it serves the OpenAI API", resp.StatusCode, b)
	}

	g := NewGRPC(f.tab, activator.New(f.tab, wakeAs{f}, activator.Options{Timeout: time.Second}), Options{})
	ln := listenLoopback(t)
	s := g.NewServer()
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = oipgrpc.NewGRPCInferenceServiceClient(cc).ModelInfer(ctx, inferRequest(t, "alpha"))
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "serves the OpenAI API") {
		t.Errorf("gRPC infer = %v; want NotFound saying it serves the OpenAI API", err)
	}
	if len(f.tab.Lookup("alpha").Endpoints) != 0 {
		t.Error("an OIP request woke the OpenAI deployment")
	}
}
