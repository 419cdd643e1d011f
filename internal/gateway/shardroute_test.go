package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/engine/httpproxy/openaitest"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
)

// namedReplica starts a real echo replica of deployment name, REST and
// gRPC on one port: it answers only requests that name it.
func namedReplica(t testing.TB, name, id string) *balance.Endpoint {
	t.Helper()
	m, err := echo.Load("")
	if err != nil {
		t.Fatal(err)
	}
	ln := listenLoopback(t)
	s := server.New(name, m, server.Options{ReplicaID: id})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.ServeWithGRPC(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-served })
	return balance.NewEndpoint(id, "http://"+ln.Addr().String())
}

// shardRoutes are the route objects of the tests: by header with a
// default, by input without one, one to a deployment that does not
// exist, and one that shares its name with a deployment.
func shardRoutes() []serving.Route {
	return []serving.Route{
		{Name: "classify", Spec: serving.RouteSpec{
			Match:   serving.RouteMatch{Header: "X-Region"},
			Rules:   []serving.RouteRule{{Value: "eu", Deployment: "classify-eu"}, {Value: "cold", Deployment: "classify-cold"}},
			Default: "classify-global",
		}},
		{Name: "tasks", Spec: serving.RouteSpec{
			Match: serving.RouteMatch{Input: "input"},
			Rules: []serving.RouteRule{{Value: "1", Deployment: "classify-eu"}, {Value: "7", Deployment: "classify-global"}},
		}},
		{Name: "ghost", Spec: serving.RouteSpec{Match: serving.RouteMatch{Header: "X-Region"}, Default: "nowhere"}},
		{Name: "clash", Spec: serving.RouteSpec{Match: serving.RouteMatch{Header: "X-Region"}, Default: "classify-eu"}},
	}
}

type shardFixture struct {
	tab    *routing.Table
	shards *routing.Shards
	wakes  chan string
	url    string
	grpc   oipgrpc.GRPCInferenceServiceClient
}

// newShardFixture serves, REST and gRPC, deployments classify-eu,
// classify-global and clash (warm), and classify-cold (cold: woken, it
// gets a replica), behind the route objects of shardRoutes.
func newShardFixture(t *testing.T, a Authenticator) *shardFixture {
	t.Helper()
	f := &shardFixture{tab: &routing.Table{}, shards: &routing.Shards{}, wakes: make(chan string, 8)}
	for _, name := range []string{"classify-eu", "classify-global", "clash"} {
		f.tab.Publish(routing.Route{Deployment: name, Stats: &stats.Recorder{}, Endpoints: []*balance.Endpoint{namedReplica(t, name, name+"-1")}})
	}
	f.tab.Publish(routing.Route{Deployment: "classify-cold", Stats: &stats.Recorder{}})
	cold := namedReplica(t, "classify-cold", "classify-cold-1")
	if err := f.shards.Set(shardRoutes()); err != nil {
		t.Fatal(err)
	}
	act := activator.New(f.tab, wakeFunc(func(name string) {
		f.wakes <- name
		if name == "classify-cold" {
			f.tab.Publish(routing.Route{Deployment: name, Stats: &stats.Recorder{}, Endpoints: []*balance.Endpoint{cold}})
		}
	}), activator.Options{Timeout: 2 * time.Second})
	opts := Options{Metrics: NewMetrics(prometheus.NewRegistry()), HoldTimeout: time.Second, MaxBodyBytes: 4096, Auth: a, Shards: f.shards}
	f.url = serve(t, New(f.tab, act, opts))
	gw := NewGRPC(f.tab, act, opts)
	ln := listenLoopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ctx, ln, 5*time.Second) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); cancel(); <-served })
	f.grpc = oipgrpc.NewGRPCInferenceServiceClient(cc)
	return f
}

type wakeFunc func(string)

func (w wakeFunc) Wake(name string) { w(name) }

// do sends a request with headers (key, value pairs) and returns the
// answer's status, headers and body.
func (f *shardFixture) do(t *testing.T, method, path, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req := httptest.NewRequest(method, f.url+path, strings.NewReader(body))
	req.RequestURI = ""
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// taskBody is an echo request whose input's first element is first.
func taskBody(first string) string {
	return `{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[[` + first + `,2]]}]}`
}

const otherInputBody = `{"inputs":[{"name":"other","shape":[1],"datatype":"FP32","data":[1]}]}`

// TestShardRouteREST is the route-rule table over REST: header, input,
// default, an unknown value (404 naming the route, value and values), a
// missing target, and a name both a deployment and a route has (the
// deployment wins).
func TestShardRouteREST(t *testing.T) {
	f := newShardFixture(t, nil)
	tests := []struct {
		name       string
		method     string
		path, body string
		headers    []string
		want       int
		deployment string   // Ebb-Deployment of the answer ("" none)
		replica    string   // Ebb-Replica of the answer
		contains   []string // in the body
	}{
		{"header rule", "POST", "/v2/models/classify/infer", body, []string{"X-Region", "eu"}, 200, "classify-eu", "classify-eu-1", []string{`"model_name":"classify-eu"`}},
		{"unknown header value takes the default", "POST", "/v2/models/classify/infer", body, []string{"X-Region", "apac"}, 200, "classify-global", "classify-global-1", nil},
		{"no header takes the default", "POST", "/v2/models/classify/infer", body, nil, 200, "classify-global", "classify-global-1", nil},
		{"header values are exact", "POST", "/v2/models/classify/infer", body, []string{"X-Region", "EU"}, 200, "classify-global", "classify-global-1", nil},
		{"cold target wakes", "POST", "/v2/models/classify/infer", body, []string{"X-Region", "cold"}, 200, "classify-cold", "classify-cold-1", nil},
		{"input rule", "POST", "/v2/models/tasks/infer", taskBody("1"), nil, 200, "classify-eu", "classify-eu-1", []string{`"model_name":"classify-eu"`}},
		{"input rule, other value", "POST", "/v2/models/tasks/infer", taskBody("7"), nil, 200, "classify-global", "classify-global-1", nil},
		{"unknown input value", "POST", "/v2/models/tasks/infer", taskBody("3.5"), nil, 404, "", "",
			[]string{`route \"tasks\" has no deployment`, `input \"input\" is \"3.5\"`, `\"1\", \"7\"`, "route/no_target"}},
		{"no input value", "POST", "/v2/models/tasks/infer", otherInputBody, nil, 404, "", "", []string{`the request has no input \"input\"`}},
		{"target missing", "POST", "/v2/models/ghost/infer", body, nil, 404, "nowhere", "", []string{`deployment \"nowhere\", which does not exist`}},
		{"deployment wins a shared name", "POST", "/v2/models/clash/infer", body, []string{"X-Region", "eu"}, 200, "", "clash-1", nil},
		{"neither deployment nor route", "POST", "/v2/models/nope/infer", body, nil, 404, "", "", []string{`model \"nope\" not found`}},
		{"ready by header", "GET", "/v2/models/classify/ready", "", []string{"X-Region", "eu"}, 200, "classify-eu", "", []string{`"name":"classify-eu"`}},
		{"metadata takes the default", "GET", "/v2/models/classify", "", nil, 200, "classify-global", "classify-global-1", []string{`"name":"classify-global"`}},
		{"input route's metadata has no default", "GET", "/v2/models/tasks", "", nil, 404, "", "", []string{`the request has no input \"input\"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, out := f.do(t, tt.method, tt.path, tt.body, tt.headers...)
			if code != tt.want {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, code, out, tt.want)
			}
			if got := h.Get("Ebb-Deployment"); got != tt.deployment {
				t.Errorf("Ebb-Deployment = %q, want %q", got, tt.deployment)
			}
			if got := h.Get("Ebb-Replica"); got != tt.replica {
				t.Errorf("Ebb-Replica = %q, want %q", got, tt.replica)
			}
			for _, c := range tt.contains {
				if !strings.Contains(out, c) {
					t.Errorf("body %s does not contain %s", out, c)
				}
			}
		})
	}
	select {
	case name := <-f.wakes:
		if name != "classify-cold" {
			t.Errorf("woke %q, want classify-cold", name)
		}
	default:
		t.Errorf("no deployment was woken: a route's cold target must wake")
	}
}

// TestShardRouteTableChanges checks that a route's change reaches the
// next request, and that a deleted route is gone.
func TestShardRouteTableChanges(t *testing.T) {
	f := newShardFixture(t, nil)
	routes := shardRoutes()
	routes[0].Spec.Rules[0].Deployment = "classify-global"
	if err := f.shards.Set(routes); err != nil {
		t.Fatal(err)
	}
	if _, h, out := f.do(t, "POST", "/v2/models/classify/infer", body, "X-Region", "eu"); h.Get("Ebb-Deployment") != "classify-global" {
		t.Errorf("after the rule changed, eu went to %q (%s), want classify-global", h.Get("Ebb-Deployment"), out)
	}
	if err := f.shards.Set(routes[1:]); err != nil {
		t.Fatal(err)
	}
	if code, _, out := f.do(t, "POST", "/v2/models/classify/infer", body); code != 404 {
		t.Errorf("deleted route answered %d %s, want 404", code, out)
	}
}

func TestShardRouteGRPC(t *testing.T) {
	f := newShardFixture(t, nil)
	byInput := func(first float32) *oipgrpc.ModelInferRequest {
		req := &oipgrpc.ModelInferRequest{ModelName: "tasks", Inputs: []*oipgrpc.ModelInferRequest_InferInputTensor{{
			Name: "input", Datatype: "FP32", Shape: []int64{1, 2},
			Contents: &oipgrpc.InferTensorContents{Fp32Contents: []float32{first, 2}},
		}}}
		return req
	}
	tests := []struct {
		name       string
		req        *oipgrpc.ModelInferRequest
		md         []string
		want       codes.Code
		deployment string
		contains   string
	}{
		{"metadata rule", inferRequest(t, "classify"), []string{"x-region", "eu"}, codes.OK, "classify-eu", ""},
		{"default", inferRequest(t, "classify"), nil, codes.OK, "classify-global", ""},
		{"input rule", byInput(7), nil, codes.OK, "classify-global", ""},
		{"unknown input value", byInput(3), nil, codes.NotFound, "", `route "tasks" has no deployment`},
		{"target missing", inferRequest(t, "ghost"), nil, codes.NotFound, "nowhere", "does not exist"},
		{"deployment wins", inferRequest(t, "clash"), nil, codes.OK, "", ""},
		{"unknown name", inferRequest(t, "nope"), nil, codes.NotFound, "", "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if len(tt.md) > 0 {
				ctx = metadata.AppendToOutgoingContext(ctx, tt.md...)
			}
			var hdr metadata.MD
			resp, err := f.grpc.ModelInfer(ctx, tt.req, grpc.Header(&hdr))
			if status.Code(err) != tt.want {
				t.Fatalf("ModelInfer = %v, want %v", err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("error %q does not contain %q", err, tt.contains)
			}
			if got := strings.Join(hdr.Get("ebb-deployment"), ","); got != tt.deployment {
				t.Errorf("ebb-deployment = %q, want %q", got, tt.deployment)
			}
			if err == nil && tt.deployment != "" && resp.GetModelName() != tt.deployment {
				t.Errorf("answered by model %q, want %q", resp.GetModelName(), tt.deployment)
			}
		})
	}
}

// TestShardRouteAuth checks that a request through a route needs predict
// on the deployment it resolves to, and that predict on the route's name
// alone reaches nothing.
func TestShardRouteAuth(t *testing.T) {
	tokens := &tokenMap{m: map[string]auth.Token{}}
	f := newShardFixture(t, auth.NewVerifier(tokens, 0, nil))
	eu, route, all := tokens.add(t, "predict:classify-eu"), tokens.add(t, "predict:classify"), tokens.add(t, "predict:*")
	tests := []struct {
		name   string
		token  string
		region string
		want   int
		wantMD codes.Code
	}{
		{"target allowed", eu, "eu", 200, codes.OK},
		{"other target refused", eu, "us", 403, codes.PermissionDenied},
		{"route name alone refused", route, "eu", 403, codes.PermissionDenied},
		{"wildcard", all, "us", 200, codes.OK},
		{"no token", "", "eu", 401, codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			headers := []string{"X-Region", tt.region}
			if tt.token != "" {
				headers = append(headers, "Authorization", "Bearer "+tt.token)
			}
			if code, _, out := f.do(t, "POST", "/v2/models/classify/infer", body, headers...); code != tt.want {
				t.Errorf("REST = %d %s, want %d", code, out, tt.want)
			}
			md := []string{"x-region", tt.region}
			if tt.token != "" {
				md = append(md, "authorization", "Bearer "+tt.token)
			}
			ctx := metadata.AppendToOutgoingContext(context.Background(), md...)
			if _, err := f.grpc.ModelInfer(ctx, inferRequest(t, "classify")); status.Code(err) != tt.wantMD {
				t.Errorf("gRPC = %v, want %v", err, tt.wantMD)
			}
		})
	}
}

func TestShardRouteOpenAI(t *testing.T) {
	eu := openAIReplica(t, "chat-eu-1", "chat-eu", openaitest.Options{Name: "up-eu", Models: []string{"chat-eu"}})
	us := openAIReplica(t, "chat-us-1", "chat-us", openaitest.Options{Name: "up-us", Models: []string{"chat-us"}})
	f := newOpenAIFixture(t, nil, openAIRoute("chat-eu", eu), openAIRoute("chat-us", us))
	f.g.opts.Shards = &routing.Shards{}
	if err := f.g.opts.Shards.Set([]serving.Route{
		{Name: "chat", Spec: serving.RouteSpec{Match: serving.RouteMatch{Input: "user"},
			Rules: []serving.RouteRule{{Value: "anna", Deployment: "chat-eu"}}, Default: "chat-us"}},
		{Name: "strict", Spec: serving.RouteSpec{Match: serving.RouteMatch{Header: "X-Region"},
			Rules: []serving.RouteRule{{Value: "eu", Deployment: "chat-eu"}}}},
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, body string
		want       int
		model      string
	}{
		{"body field rule", `{"model": "chat", "user": "anna", "prompt": "hi"}`, 200, "chat-eu"},
		{"default", `{"prompt":"hi","model":"chat"}`, 200, "chat-us"},
		{"no rule, no default", `{"model":"strict","prompt":"hi"}`, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := f.post(t, "/openai/v1/completions", "", tt.body)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, b, tt.want)
			}
			a := decodeAnswer(t, b)
			if tt.want != 200 {
				if a.Error == nil || a.Error.Code == nil || *a.Error.Code != codeRouteNoTarget {
					t.Errorf("error %s, want code %s", b, codeRouteNoTarget)
				}
				return
			}
			if resp.Header.Get("Ebb-Deployment") != tt.model || a.Model != tt.model {
				t.Errorf("answered by %q (Ebb-Deployment %q), want %q: %s", a.Model, resp.Header.Get("Ebb-Deployment"), tt.model, b)
			}
		})
	}
}

func TestSetBodyModel(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{`{"model":"chat","prompt":"hi"}`, `{"model":"chat-eu","prompt":"hi"}`, true},
		{`{ "prompt" : {"model":"inner"}, "model" :  "chat" , "n":1}`, `{ "prompt" : {"model":"inner"}, "model" :  "chat-eu" , "n":1}`, true},
		{"{\"model\":\n\t\"chat\"}", "{\"model\":\n\t\"chat-eu\"}", true},
		{`{"prompt":"hi"}`, "", false},
		{`["model","chat"]`, "", false},
		{`{"model":`, "", false},
	}
	for _, tt := range tests {
		got, ok := setBodyModel([]byte(tt.in), "chat-eu")
		if ok != tt.ok || string(got) != tt.want {
			t.Errorf("setBodyModel(%s) = %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.ok)
		}
		if ok && !json.Valid(got) {
			t.Errorf("setBodyModel(%s) = %s, not JSON", tt.in, got)
		}
	}
}

func TestBodyField(t *testing.T) {
	tests := []struct {
		body, field, want string
		ok                bool
	}{
		{`{"user":"anna"}`, "user", "anna", true},
		{`{"n":42}`, "n", "42", true},
		{`{"tags":[["x"]]}`, "tags", "x", true},
		{`{"user":null}`, "user", "", false},
		{`{"other":1}`, "user", "", false},
		{`not json`, "user", "", false},
	}
	for _, tt := range tests {
		got, ok := bodyField([]byte(tt.body), tt.field)
		if ok != tt.ok || string(got) != tt.want {
			t.Errorf("bodyField(%s, %s) = %q, %v; want %q, %v", tt.body, tt.field, got, ok, tt.want, tt.ok)
		}
	}
}

// TestShardRouteOpenAIAuth: an OpenAI request through a route needs
// predict on the deployment it reaches, as OIP requests do.
func TestShardRouteOpenAIAuth(t *testing.T) {
	tokens := &tokenMap{m: map[string]auth.Token{}}
	eu := openAIReplica(t, "chat-eu-1", "chat-eu", openaitest.Options{Name: "up-eu", Models: []string{"chat-eu"}})
	us := openAIReplica(t, "chat-us-1", "chat-us", openaitest.Options{Name: "up-us", Models: []string{"chat-us"}})
	f := newOpenAIFixture(t, auth.NewVerifier(tokens, 0, nil), openAIRoute("chat-eu", eu), openAIRoute("chat-us", us))
	f.g.opts.Shards = &routing.Shards{}
	if err := f.g.opts.Shards.Set([]serving.Route{{Name: "chat", Spec: serving.RouteSpec{Match: serving.RouteMatch{Input: "user"},
		Rules: []serving.RouteRule{{Value: "anna", Deployment: "chat-eu"}}, Default: "chat-us"}}}); err != nil {
		t.Fatal(err)
	}
	token := tokens.add(t, "predict:chat-eu")
	if resp, b := f.post(t, "/v1/completions", token, `{"model":"chat","user":"anna","prompt":"hi"}`); resp.StatusCode != 200 {
		t.Errorf("to the allowed target: %d %s", resp.StatusCode, b)
	}
	resp, b := f.post(t, "/v1/completions", token, `{"model":"chat","user":"bob","prompt":"hi"}`)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Ebb-Deployment") != "" {
		t.Errorf("to another target: %d (Ebb-Deployment %q) %s, want 403 naming no deployment", resp.StatusCode, resp.Header.Get("Ebb-Deployment"), b)
	}
}
