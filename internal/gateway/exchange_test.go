package gateway

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fasthttp"
)

// TestMoveBody checks that the answer's body reaches the client's response
// whole, copied or swapped, and stays whole when the exchange's buffer is
// written again for the next answer.
func TestMoveBody(t *testing.T) {
	for _, n := range []int{0, 1, 150, maxCopiedBody, maxCopiedBody + 1, 1 << 20} {
		want := bytes.Repeat([]byte{'a'}, n)
		var to, from fasthttp.Response
		to.SetBody([]byte("the client's response had a body before"))
		from.SetBody(want)
		moveBody(&to, &from)
		// The exchange's buffer is reused for the next answer.
		for i, next := 0, from.Body(); i < len(next); i++ {
			next[i] = 'b'
		}
		from.Reset()
		if got := to.Body(); !bytes.Equal(got, want) {
			t.Errorf("%d bytes: the client's response has %d bytes (%.10q...), want the answer's", n, len(got), got)
		}
	}
}

// TestForwardedRequest checks what reaches a replica, request after
// request on one connection (so on a reused exchange): the request's own
// path and query, the headers passed on (the request id, the binary
// tensor length, the trace context) and no other of the client's (its
// token, cookies, any other). A query or header of one request must not
// reach the replica with the next.
func TestForwardedRequest(t *testing.T) {
	type seen struct {
		URI     string
		Headers map[string]string
	}
	passed := []string{"X-Request-Id", "Inference-Header-Content-Length", "Traceparent", "Tracestate"}
	kept := []string{"Authorization", "Cookie", "X-Custom", PriorityHeader}
	got := make(chan seen, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{URI: r.URL.RequestURI(), Headers: map[string]string{}}
		for _, h := range append(passed, kept...) {
			if v, ok := r.Header[h]; ok {
				s.Headers[h] = strings.Join(v, ",")
			}
		}
		got <- s
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"model_name":"m","outputs":[]}`)
	}))
	t.Cleanup(up.Close)
	f := newFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{balance.NewEndpoint("r1", up.URL)}})
	tp := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	cases := []struct {
		query   string
		headers map[string]string // sent by the client
		want    map[string]string // seen by the replica
	}{
		{"?a=1&b=two", map[string]string{"X-Request-Id": "r-1", "Traceparent": tp, "Tracestate": "k=v", "Authorization": "Bearer secret", "Cookie": "c=1", "X-Custom": "x", PriorityHeader: "batch"},
			map[string]string{"X-Request-Id": "r-1", "Traceparent": tp, "Tracestate": "k=v"}},
		{"", map[string]string{}, map[string]string{}},
		{"?c=3", map[string]string{"Inference-Header-Content-Length": "7", "x-request-id": "r-3"},
			map[string]string{"Inference-Header-Content-Length": "7", "X-Request-Id": "r-3"}},
		{"", map[string]string{"Cookie": "c=2"}, map[string]string{}},
	}
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	for round := range 3 {
		for i, c := range cases {
			req, err := http.NewRequest(http.MethodPost, f.url+"/v2/models/m/infer"+c.query, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range c.headers {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("round %d, request %d: status %d", round, i, resp.StatusCode)
			}
			s := <-got
			want := seen{URI: "/v2/models/m/infer" + c.query, Headers: c.want}
			if diff := cmp.Diff(want, s); diff != "" {
				t.Errorf("round %d, request %d: the replica saw (-want +got):\n%s", round, i, diff)
			}
		}
	}
}
