package drain

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"
)

// TestShutdownClosesKeepAliveGracefully checks that a request sent on an
// idle keep-alive connection while the server drains is answered, with
// "Connection: close", and that Shutdown then returns without waiting out
// its grace.
func TestShutdownClosesKeepAliveGracefully(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })}
	d := New(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	client := &http.Client{Transport: &http.Transport{}}
	url := "http://" + ln.Addr().String()
	get := func() (resp *http.Response, reused bool) {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err = client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, reused
	}
	if resp, _ := get(); resp.Close {
		t.Fatal("a response before the drain asks to close the connection")
	}

	// The server marks the connection idle a moment after the client has
	// read the answer: the drain is about idle connections, so start it
	// only once the server sees this one idle.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if n, _ := d.idleConns(); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the keep-alive connection never became idle on the server")
		}
	}
	const grace = 10 * time.Second
	began := time.Now()
	shut := make(chan error, 1)
	go func() { shut <- d.Shutdown(context.Background(), grace) }()
	for !d.draining.Load() {
		time.Sleep(time.Millisecond)
	}
	resp, reused := get()
	if !reused || !resp.Close || resp.StatusCode != http.StatusOK {
		t.Errorf("request on the idle connection while draining: status %d, reused %v, Connection: close %v; want 200 on the same connection, closing it", resp.StatusCode, reused, resp.Close)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(grace / 2):
		t.Fatal("Shutdown still waits after the last idle connection closed")
	}
	if took := time.Since(began); took >= grace {
		t.Errorf("Shutdown took %v, the whole grace", took)
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Errorf("Serve = %v, want http.ErrServerClosed", err)
	}
}
