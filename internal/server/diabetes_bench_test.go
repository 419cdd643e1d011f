package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/serving/core"
	"github.com/valyala/fasthttp"
)

// This file measures one real model, the diabetes XGBoost regressor (engine
// trees) with its example request (2 rows of 10 features), as the bench's
// scenario 2 serves it: the handler alone (decode, model, encode), and end
// to end over loopback TCP with 32 kept-alive connections, as wrk drives a
// replica. The end-to-end client is raw bytes on a socket so that the
// profile shows the server, not a client.

// diabetesServer returns a Server for the diabetes model, set up as
// ebb-replica sets it up (a secret, metrics), and its example request.
func diabetesServer(b *testing.B) (*Server, []byte) {
	b.Helper()
	m, err := trees.Load(diabetesDir + "/model.json")
	if err != nil {
		b.Fatal(err)
	}
	body, err := os.ReadFile(diabetesDir + "/request.json")
	if err != nil {
		b.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		b.Fatal(err)
	}
	s := New("diabetes", m, Options{Secret: "s3cret", ModelVersion: "diabetes:1"})
	return s, compact.Bytes()
}

// BenchmarkDiabetesHandler is the REST infer handler for the diabetes
// model without a network: what the server does per request beyond HTTP.
func BenchmarkDiabetesHandler(b *testing.B) {
	s, body := diabetesServer(b)
	req := httptest.NewRequest("POST", "/v2/models/diabetes/infer", nil)
	req.Header.Set(core.SecretHeader, "s3cret")
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = int64(len(body))
	w := &discardWriter{h: http.Header{}}
	rd := bytes.NewReader(body)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		clear(w.h)
		s.ServeHTTP(w, req)
		if w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
	}
}

// BenchmarkDiabetesFastHandler is BenchmarkDiabetesHandler for the
// handler of Serve's fasthttp server.
func BenchmarkDiabetesFastHandler(b *testing.B) {
	s, body := diabetesServer(b)
	r := s.newREST()
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/v2/models/diabetes/infer")
		ctx.Request.Header.Set(core.SecretHeader, "s3cret")
		ctx.Request.Header.SetContentType("application/json")
		ctx.Request.SetBody(body)
		r.handle(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// BenchmarkDiabetesLoopback is the diabetes model served by ServeWithGRPC
// (as ebb-replica serves it) over loopback TCP, 32 connections sending one
// request after another, each checked for status 200 and a body.
func BenchmarkDiabetesLoopback(b *testing.B) {
	s, body := diabetesServer(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.ServeWithGRPC(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			b.Errorf("ServeWithGRPC: %v", err)
		}
	}()
	addr := ln.Addr().String()
	req := fmt.Appendf(nil, "POST /v2/models/diabetes/infer HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nEbb-Replica-Secret: s3cret\r\nContent-Length: %d\r\n\r\n%s", addr, len(body), body)
	b.ReportAllocs()
	b.SetParallelism(16) // 32 connections on 2 CPUs, as the bench's wrk
	cpu := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			if err := readResponse(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	// CPU time (server and client) is steadier than wall time on a
	// machine shared with other work.
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// cpuTime returns the CPU time the process has used, in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// readResponse reads one HTTP/1.1 response with a Content-Length and fails
// unless its status is 200.
func readResponse(r *bufio.Reader) error {
	status, err := r.ReadSlice('\n')
	if err != nil {
		return err
	}
	ok := bytes.HasPrefix(status, []byte("HTTP/1.1 200 "))
	n := -1
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, found := bytes.Cut(line, []byte(":")); found && bytes.EqualFold(k, []byte("Content-Length")) {
			if n, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return err
			}
		}
	}
	if n < 0 {
		return fmt.Errorf("response without Content-Length: %q", status)
	}
	if _, err := r.Discard(n); err != nil {
		return err
	}
	if !ok || n == 0 {
		return fmt.Errorf("response %q with %d bytes", bytes.TrimSpace(status), n)
	}
	return nil
}
