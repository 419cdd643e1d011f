package harness

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestInterleaved runs the latency client against real servers: plain and
// chunked answers, a server that closes after each answer, one that
// answers 500, and one that checks the token.
func TestInterleaved(t *testing.T) {
	body := []byte(`{"inputs":[]}`)
	var conns atomic.Int64
	// ok answers "ok" to a well-formed request, with header set to value
	// when header is not empty.
	ok := func(header, value string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			got, err := io.ReadAll(r.Body)
			if err != nil || string(got) != string(body) || r.Method != http.MethodPost ||
				r.Header.Get("Content-Type") != "application/json" || r.URL.Path != "/v2/models/m/infer" {
				http.Error(w, "bad request", http.StatusBadRequest)
				return
			}
			if header != "" {
				w.Header().Set(header, value)
			}
			w.Write([]byte("ok"))
		}
	}
	servers := map[string]http.HandlerFunc{
		"plain":   ok("Content-Length", "2"),
		"chunked": ok("Transfer-Encoding", "chunked"),
		"closing": ok("Connection", "close"),
		"failing": func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			http.Error(w, "boom", http.StatusInternalServerError)
		},
		"auth": func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer s3cret" {
				http.Error(w, "no token", http.StatusUnauthorized)
				return
			}
			ok("", "")(w, r)
		},
	}
	names := []string{"plain", "chunked", "closing", "failing", "auth"}
	urls := make([]string, len(names))
	for i, name := range names {
		srv := httptest.NewUnstartedServer(servers[name])
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
		srv.Start()
		t.Cleanup(srv.Close)
		urls[i] = srv.URL + "/v2/models/m/infer"
		if name == "auth" {
			urls[i] = BearerURL(urls[i], "s3cret")
		}
	}
	const n = 20
	lat, failed, err := Interleaved(context.Background(), urls, body, n, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int{}
	for i, name := range names {
		got[name] = [2]int{len(lat[i]), failed[i]}
	}
	want := map[string][2]int{
		"plain": {n, 0}, "chunked": {n, 0}, "closing": {n, 0}, "failing": {0, n}, "auth": {n, 0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answered and failed per server (-want +got):\n%s", diff)
	}
	// One connection each for the servers that keep it, one per request
	// for the one that closes it.
	if c := conns.Load(); c != 4+n {
		t.Errorf("connections opened = %d, want %d", c, 4+n)
	}
}

func TestInterleavedRejectsHTTPS(t *testing.T) {
	if _, _, err := Interleaved(context.Background(), []string{"https://127.0.0.1:1/x"}, nil, 1, time.Second); err == nil {
		t.Error("an https URL was accepted")
	}
}
