// Package openaitest is a small server of the OpenAI API that stands in for
// vLLM in tests: GET /v1/models, POST /v1/chat/completions and
// /v1/completions (with and without stream: true), POST /v1/embeddings, and
// GET /health. It computes nothing: a completion repeats the prompt's words,
// one word per streamed chunk, and an embedding is the lengths of the
// input's words. What tests check with it is the path in front of it:
// routing, holding, streaming and scaling.
//
// Every answer names the server (Options.Name) in system_fingerprint and
// the model it was asked for in model, so a test sees which server
// answered and under which name. Every streamed chunk carries the time it
// was sent (sent_unix_nano), and chunks are Options.ChunkGap apart, so a
// test can tell a stream that arrives as it is sent from one buffered on
// the way.
//
// Tests that start it as a deployment's command call MainIfChild from
// TestMain and start the test binary itself with Env(...) in its
// environment.
package openaitest

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options configure a server.
type Options struct {
	// Name identifies the server in its answers (system_fingerprint).
	Name string
	// Models are the model names it serves; requests for others get 404
	// model_not_found. Empty: any model.
	Models []string
	// ChunkGap is the pause between streamed chunks.
	ChunkGap time.Duration
	// BeforeChunk, when set, is called before each streamed chunk after
	// the first, with the chunk's index; a test uses it to hold a chunk
	// until the client saw the one before.
	BeforeChunk func(ctx context.Context, i int)
}

// Handler returns the server's handler.
func Handler(opts Options) http.Handler {
	s := &server{opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /v1/models", s.models)
	mux.HandleFunc("POST /v1/chat/completions", s.complete)
	mux.HandleFunc("POST /v1/completions", s.complete)
	mux.HandleFunc("POST /v1/embeddings", s.embed)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", r.Method+" "+r.URL.Path+" is not served")
	})
	return mux
}

type server struct{ opts Options }

// request is what the server reads of a request body.
type request struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Prompt   any    `json:"prompt"`
	Input    any    `json:"input"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
}

func (s *server) read(w http.ResponseWriter, r *http.Request) (request, bool) {
	var req request
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "body is not JSON: "+err.Error())
		return req, false
	}
	if len(s.opts.Models) > 0 && !slices.Contains(s.opts.Models, req.Model) {
		writeErrorCode(w, http.StatusNotFound, "invalid_request_error", "model_not_found",
			fmt.Sprintf("The model `%s` does not exist.", req.Model))
		return req, false
	}
	return req, true
}

func (s *server) models(w http.ResponseWriter, _ *http.Request) {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, m := range s.opts.Models {
		list.Data = append(list.Data, model{ID: m, Object: "model", OwnedBy: "openaitest"})
	}
	writeJSON(w, http.StatusOK, list)
}

// complete answers chat/completions and completions: the words of the
// last message (or prompt), all at once or one per chunk.
func (s *server) complete(w http.ResponseWriter, r *http.Request) {
	req, ok := s.read(w, r)
	if !ok {
		return
	}
	chat := strings.HasSuffix(r.URL.Path, "/chat/completions")
	text := fmt.Sprint(req.Prompt)
	if chat {
		if len(req.Messages) == 0 {
			writeError(w, http.StatusBadRequest, "invalid_request_error", "messages is empty")
			return
		}
		text = req.Messages[len(req.Messages)-1].Content
	}
	words := strings.Fields(text)
	id := "cmpl-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	object := "text_completion"
	if chat {
		object = "chat.completion"
	}
	if !req.Stream {
		choice := map[string]any{"index": 0, "finish_reason": "stop"}
		if chat {
			choice["message"] = map[string]any{"role": "assistant", "content": strings.Join(words, " ")}
		} else {
			choice["text"] = strings.Join(words, " ")
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": object, "created": time.Now().Unix(), "model": req.Model,
			"system_fingerprint": s.opts.Name, "choices": []any{choice},
			"usage": map[string]int{"prompt_tokens": len(words), "completion_tokens": len(words), "total_tokens": 2 * len(words)},
		})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	flush()
	for i, word := range words {
		if i > 0 {
			if s.opts.BeforeChunk != nil {
				s.opts.BeforeChunk(r.Context(), i)
			}
			select {
			case <-time.After(s.opts.ChunkGap):
			case <-r.Context().Done():
				return
			}
		}
		choice := map[string]any{"index": 0, "finish_reason": nil}
		if i == len(words)-1 {
			choice["finish_reason"] = "stop"
		}
		if chat {
			choice["delta"] = map[string]any{"content": word}
		} else {
			choice["text"] = word
		}
		chunk, _ := json.Marshal(map[string]any{
			"id": id, "object": object + ".chunk", "created": time.Now().Unix(), "model": req.Model,
			"system_fingerprint": s.opts.Name, "choices": []any{choice},
			"sent_unix_nano": time.Now().UnixNano(),
		})
		fmt.Fprintf(w, "data: %s\n\n", chunk)
		flush()
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	flush()
}

// embed answers embeddings: one vector per input, the lengths of its
// words.
func (s *server) embed(w http.ResponseWriter, r *http.Request) {
	req, ok := s.read(w, r)
	if !ok {
		return
	}
	var inputs []string
	switch in := req.Input.(type) {
	case string:
		inputs = []string{in}
	case []any:
		for _, v := range in {
			inputs = append(inputs, fmt.Sprint(v))
		}
	default:
		writeError(w, http.StatusBadRequest, "invalid_request_error", "input must be a string or an array of strings")
		return
	}
	data := []any{}
	for i, in := range inputs {
		vec := []float64{}
		for _, word := range strings.Fields(in) {
			vec = append(vec, float64(len(word)))
		}
		data = append(data, map[string]any{"object": "embedding", "index": i, "embedding": vec})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "model": req.Model, "data": data,
		"system_fingerprint": s.opts.Name})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	writeErrorCode(w, status, typ, "", msg)
}

func writeErrorCode(w http.ResponseWriter, status int, typ, code, msg string) {
	e := map[string]any{"message": msg, "type": typ, "param": nil, "code": nil}
	if code != "" {
		e["code"] = code
	}
	writeJSON(w, status, map[string]any{"error": e})
}

// Environment variables that make MainIfChild serve.
const (
	envName     = "EBB_OPENAITEST_NAME"
	envModels   = "EBB_OPENAITEST_MODELS"
	envChunkGap = "EBB_OPENAITEST_CHUNK_GAP"
	envReadyIn  = "EBB_OPENAITEST_READY_AFTER"
)

// Env returns the environment that makes a test binary calling
// MainIfChild serve opts (all but BeforeChunk) on 127.0.0.1:$PORT,
// answering /v1/models with 503 for readyAfter first, as a server does
// while it loads its model.
func Env(opts Options, readyAfter time.Duration) map[string]string {
	return map[string]string{
		envName:     cmp.Or(opts.Name, "openaitest"),
		envModels:   strings.Join(opts.Models, ","),
		envChunkGap: opts.ChunkGap.String(),
		envReadyIn:  readyAfter.String(),
	}
}

// MainIfChild serves, and exits when it receives SIGTERM, when the
// process was started with Env in its environment; otherwise it returns
// at once. Call it first thing in TestMain.
func MainIfChild() {
	name := os.Getenv(envName)
	if name == "" {
		return
	}
	opts := Options{Name: name}
	if m := os.Getenv(envModels); m != "" {
		opts.Models = strings.Split(m, ",")
	}
	opts.ChunkGap, _ = time.ParseDuration(os.Getenv(envChunkGap))
	readyAfter, _ := time.ParseDuration(os.Getenv(envReadyIn))
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "openaitest:", err)
		os.Exit(1)
	}
	readyAt := time.Now().Add(readyAfter)
	h := Handler(opts)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" && time.Now().Before(readyAt) {
			writeError(w, http.StatusServiceUnavailable, "server_error", "loading the model")
			return
		}
		h.ServeHTTP(w, r)
	})}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	fmt.Fprintf(os.Stderr, "openaitest %s: serving %v on %s\n", name, opts.Models, ln.Addr())
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "openaitest:", err)
		os.Exit(1)
	}
	os.Exit(0)
}
