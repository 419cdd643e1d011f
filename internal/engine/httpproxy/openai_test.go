package httpproxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/engine/httpproxy"
	"github.com/ebb-ml/ebb/internal/engine/httpproxy/openaitest"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestOpenAIReplica fronts an OpenAI server that knows its model as
// "org/Chat-7B" with a replica of deployment "chat".
func TestOpenAIReplica(t *testing.T) {
	var loading atomic.Bool
	loading.Store(true)
	h := openaitest.Handler(openaitest.Options{Name: "up", Models: []string{"org/Chat-7B"}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if loading.Load() {
			w.WriteHeader(http.StatusServiceUnavailable) // loading weights
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	time.AfterFunc(300*time.Millisecond, func() { loading.Store(false) })
	start := time.Now()
	base := runReplica(t, httpproxy.Options{Upstream: srv.URL, Deployment: "chat", UpstreamModel: "org/Chat-7B",
		Protocol: serving.ProtocolOpenAI, Secret: "s3cret", PollInterval: 20 * time.Millisecond})
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("ready after %v, while the server answered 503 for 300ms", waited)
	}

	// The replica answers the OIP health checks the control loop and
	// kubelet send.
	for _, p := range []string{"/v2/health/live", "/v2/health/ready"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d; want 200", p, resp.StatusCode)
		}
	}
	// Without the secret, nothing.
	if code, _ := callWith(t, "", "POST", base+"/v1/completions", `{"model":"chat","prompt":"x"}`); code != http.StatusUnauthorized {
		t.Errorf("completion without the secret = %d; want 401", code)
	}
	// The model is renamed on the way in; the rest of the body is as sent.
	code, got := callWith(t, "s3cret", "POST", base+"/v1/chat/completions",
		`{"messages":[{"role":"user","content":"hi  there"}], "model" : "chat", "temperature":0}`)
	if code != 200 || got["model"] != "org/Chat-7B" {
		t.Errorf("chat completion = %d %v; want 200 from the server asked for org/Chat-7B", code, got)
	}
	code, got = callWith(t, "s3cret", "POST", base+"/v1/embeddings", `{"model":"chat","input":["a bb"]}`)
	if code != 200 || got["model"] != "org/Chat-7B" {
		t.Errorf("embeddings = %d %v; want 200", code, got)
	}
	// Not an OIP server.
	code, got = callWith(t, "s3cret", "POST", base+"/v2/models/chat/infer", echoRequest)
	if code != 404 || !strings.Contains(got["error"].(string), "serves the OpenAI API") {
		t.Errorf("OIP infer = %d %v; want 404 saying where the API is", code, got)
	}
	ctx, cancel := context.WithTimeout(withSecret(context.Background(), "s3cret"), 10*time.Second)
	defer cancel()
	if _, err := grpcClient(t, base).ModelInfer(ctx, &oipgrpc.ModelInferRequest{ModelName: "chat"}); status.Code(err) != codes.Unimplemented {
		t.Errorf("gRPC ModelInfer = %v; want Unimplemented", err)
	}
}

// TestOpenAIReplicaStreams checks that the replica passes a stream on as
// the server writes it: each chunk is read before the next is sent.
func TestOpenAIReplicaStreams(t *testing.T) {
	seen := make(chan int, 8)
	late := make(chan int, 8)
	srv := httptest.NewServer(openaitest.Handler(openaitest.Options{Name: "up", BeforeChunk: func(ctx context.Context, i int) {
		select {
		case <-seen:
		case <-time.After(5 * time.Second):
			late <- i
		case <-ctx.Done():
		}
	}}))
	t.Cleanup(srv.Close)
	base := runReplica(t, httpproxy.Options{Upstream: srv.URL, Deployment: "chat", Protocol: serving.ProtocolOpenAI})
	resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(`{"model":"chat","prompt":"a b c","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && data != "[DONE]" {
			n++
			seen <- n
		}
	}
	if n != 3 {
		t.Errorf("%d chunks; want 3", n)
	}
	select {
	case i := <-late:
		t.Errorf("chunk %d was sent before the client had read the one before: the replica buffers streams", i)
	default:
	}
}

// TestOpenAICommandThroughProcessBackend starts the OpenAI test server as
// a deployment's command, through ebb's process backend, and streams from
// it: chunks arrive ChunkGap apart, each before the next was sent.
func TestOpenAICommandThroughProcessBackend(t *testing.T) {
	ctx := testCtx(t)
	b := newBackend(t)
	gap := 300 * time.Millisecond
	h, err := b.Start(ctx, replica.Spec{ID: "llm-1", Deployment: "llm", Engine: "http", Protocol: serving.ProtocolOpenAI,
		UpstreamModel: "org/LLM", Command: []string{os.Args[0]},
		Env: openaitest.Env(openaitest.Options{Name: "child", Models: []string{"org/LLM"}, ChunkGap: gap}, 200*time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop(context.Background(), h)
	if _, err := b.Ready(ctx, h); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", h.Endpoint+"/v1/chat/completions",
		strings.NewReader(`{"model":"llm","stream":true,"messages":[{"role":"user","content":"one two three"}]}`))
	req.Header.Set(replica.SecretHeader, h.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream = %d %s", resp.StatusCode, b)
	}
	var arrived []time.Time
	var sent []int64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		arrived = append(arrived, time.Now())
		var c struct {
			Model  string `json:"model"`
			SentAt int64  `json:"sent_unix_nano"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil || c.Model != "org/LLM" {
			t.Fatalf("chunk %s: %v; want one for org/LLM", data, err)
		}
		sent = append(sent, c.SentAt)
	}
	if len(arrived) != 3 {
		t.Fatalf("%d chunks; want 3", len(arrived))
	}
	for i := 1; i < len(arrived); i++ {
		if !arrived[i-1].Before(time.Unix(0, sent[i])) {
			t.Errorf("chunk %d arrived at %v, after chunk %d was sent (%v): buffered on the way",
				i-1, arrived[i-1].Format(time.StampMicro), i, time.Unix(0, sent[i]).Format(time.StampMicro))
		}
	}
}
