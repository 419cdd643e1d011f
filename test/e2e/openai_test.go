package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/engine/httpproxy/openaitest"
	"github.com/ebb-ml/ebb/internal/serving"
)

// openAIDeployment is a deployment of engine http whose command is this
// test binary serving the OpenAI test server (openaitest) under the model
// name upstream, streaming chunks gap apart, after loading for a second.
func openAIDeployment(t *testing.T, name, upstream string, gap time.Duration, scaling serving.Scaling) serving.Deployment {
	t.Helper()
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	return serving.Deployment{Name: name, Spec: serving.Spec{
		Engine: "http", Protocol: serving.ProtocolOpenAI, UpstreamModel: upstream, Command: []string{self},
		Env:     openaitest.Env(openaitest.Options{Name: name + "-server", Models: []string{upstream}, ChunkGap: gap}, time.Second),
		Scaling: scaling,
	}}
}

// openAI sends one OpenAI API request to h, with h's token.
func (h *home) openAI(ctx context.Context, method, path, body string) (*http.Response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	return http.DefaultClient.Do(req)
}

// openAIJSON sends a request and decodes the JSON answer.
func (h *home) openAIJSON(ctx context.Context, method, path, body string) (int, map[string]any) {
	h.t.Helper()
	resp, err := h.openAI(ctx, method, path, body)
	if err != nil {
		h.t.Fatalf("[%s] %s %s: %v", h.name, method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		h.t.Fatalf("[%s] %s %s = %d: answer is not JSON: %s", h.name, method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

// streamChat streams a chat completion of words and returns when each
// chunk arrived and when the server sent it.
func (h *home) streamChat(ctx context.Context, model string, words int) (arrived, sent []time.Time, err error) {
	text := strings.TrimSpace(strings.Repeat("word ", words))
	resp, err := h.openAI(ctx, http.MethodPost, "/v1/chat/completions",
		fmt.Sprintf(`{"model":%q,"stream":true,"messages":[{"role":"user","content":%q}]}`, model, text))
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		now := time.Now()
		var c struct {
			SentAt int64 `json:"sent_unix_nano"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			return nil, nil, fmt.Errorf("chunk %q: %v", data, err)
		}
		arrived, sent = append(arrived, now), append(sent, time.Unix(0, c.SentAt))
	}
	return arrived, sent, sc.Err()
}

// runOpenAIHome deploys two OpenAI servers in home h and checks ebb's
// routing by model, holding while cold, streaming, and scaling 0:N.
func runOpenAIHome(t *testing.T, h *home) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	gap := 300 * time.Millisecond
	scaling := serving.Scaling{MinReplicas: 0, MaxReplicas: 2, TargetConcurrency: 1, ScaleToZeroAfter: serving.D(4 * time.Second)}
	for _, d := range []serving.Deployment{
		openAIDeployment(t, "llm", "org/LLM-1B", gap, scaling),
		openAIDeployment(t, "embedder", "embedder", gap, scaling),
	} {
		if code, body := h.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
			t.Fatalf("[%s] create deployment %s: %d %s", h.name, d.Name, code, body)
		}
		t.Cleanup(func() { h.do(http.MethodDelete, "/v1/deployments/"+d.Name, nil, nil) })
	}

	// The model list shows both without waking them; the admin API's
	// /v1/models stays the registry.
	// (In a cluster the gateways learn of new deployments from their
	// watch, a moment after the API answered.)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, list := h.openAIJSON(ctx, http.MethodGet, "/openai/v1/models", "")
		var ids []string
		data, _ := list["data"].([]any)
		for _, m := range data {
			ids = append(ids, m.(map[string]any)["id"].(string))
		}
		if code == http.StatusOK && slices.Contains(ids, "llm") && slices.Contains(ids, "embedder") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("[%s] GET /openai/v1/models = %d %v; want llm and embedder", h.name, code, list)
		}
	}
	if code, body := h.do(http.MethodGet, "/v1/models", nil, nil); code != http.StatusOK || strings.Contains(body, `"object":"list"`) {
		t.Errorf("[%s] GET /v1/models = %d %s; want the registry's answer", h.name, code, body)
	}
	h.staysAtZero("llm", time.Second, "listing the OpenAI models")

	// Held while cold: the first request starts a replica and is answered.
	start := time.Now()
	code, got := h.openAIJSON(ctx, http.MethodPost, "/openai/v1/chat/completions", `{"model":"llm","messages":[{"role":"user","content":"wake up"}]}`)
	if code != http.StatusOK || got["system_fingerprint"] != "llm-server" || got["model"] != "org/LLM-1B" {
		t.Fatalf("[%s] cold chat completion = %d %v; want 200 from llm-server asked for org/LLM-1B", h.name, code, got)
	}
	t.Logf("[%s] cold start of an OpenAI server (1s of loading): first answer after %v", h.name, time.Since(start).Round(time.Millisecond))

	// Routed by model: the embeddings go to the other deployment.
	code, got = h.openAIJSON(ctx, http.MethodPost, "/v1/embeddings", `{"model":"embedder","input":"a bb ccc"}`)
	if code != http.StatusOK || got["system_fingerprint"] != "embedder-server" {
		t.Errorf("[%s] embeddings = %d %v; want 200 from embedder-server", h.name, code, got)
	}
	code, got = h.openAIJSON(ctx, http.MethodPost, "/v1/completions", `{"model":"gpt-4","prompt":"x"}`)
	if e, _ := got["error"].(map[string]any); code != http.StatusNotFound || e["code"] != "model_not_found" {
		t.Errorf("[%s] completion for an unknown model = %d %v; want 404 model_not_found", h.name, code, got)
	}

	// Streamed as sent: each chunk arrives before the next is sent.
	arrived, sent, err := h.streamChat(ctx, "llm", 4)
	if err != nil || len(arrived) != 4 {
		t.Fatalf("[%s] stream: %d chunks, %v; want 4", h.name, len(arrived), err)
	}
	for i := 1; i < len(arrived); i++ {
		if !arrived[i-1].Before(sent[i]) {
			t.Errorf("[%s] chunk %d arrived %v after chunk %d was sent: the stream is buffered", h.name, i-1, arrived[i-1].Sub(sent[i]), i)
		}
	}

	// Scale 0:N: to zero when idle, then long streams in parallel need a
	// second replica.
	h.waitStatus("llm", 60*time.Second, "scaled to zero", func(st serving.Status) bool { return st.Replicas == 0 })
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			arrived, _, err := h.streamChat(ctx, "llm", 30) // ~9s each
			if err == nil && len(arrived) != 30 {
				err = fmt.Errorf("%d chunks, want 30", len(arrived))
			}
			if err != nil {
				errs <- err
			}
		})
	}
	h.waitStatus("llm", 60*time.Second, "two ready replicas under four streams", func(st serving.Status) bool { return st.ReadyReplicas == 2 })
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("[%s] stream during scale-up: %v", h.name, err)
	}
	h.waitStatus("llm", 90*time.Second, "back to zero", func(st serving.Status) bool { return st.Replicas == 0 })
}

// TestOpenAIHomeUp runs the OpenAI scenario against ebb up.
func TestOpenAIHomeUp(t *testing.T) {
	p := startEbb(t, freeAddr(t), t.TempDir())
	runOpenAIHome(t, &home{t: t, name: "ebb up", base: p.base, token: p.token})
}

// TestOpenAIHomeCluster runs the OpenAI scenario against the chart in a
// cluster: the replica pods run this test binary as their command.
func TestOpenAIHomeCluster(t *testing.T) {
	h, _ := clusterHome(t)
	runOpenAIHome(t, h)
}
