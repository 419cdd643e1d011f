package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving/core"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestServeAnswersAsServeHTTP sends each request to ServeHTTP and to the
// same Server's port (Serve's fasthttp server, which answers infer itself
// and the rest through ServeHTTP) and checks that both answer alike:
// status, content headers and body.
func TestServeAnswersAsServeHTTP(t *testing.T) {
	bin, binLen := binaryBody(`{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}}],"outputs":[{"name":"score","parameters":{"binary_data":true}}]}`, f32s(1, 2)...)
	infer := `{"id":"7","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}`
	secret := map[string]string{core.SecretHeader: "s3"}
	tests := []struct {
		name, method, path, body string
		header                   map[string]string
	}{
		{name: "infer", method: "POST", path: "/v2/models/m/infer", body: infer, header: secret},
		{name: "infer with the version", method: "POST", path: "/v2/models/m/versions/3/infer", body: infer, header: secret},
		{name: "infer with another version", method: "POST", path: "/v2/models/m/versions/4/infer", body: infer, header: secret},
		{name: "infer with an empty version", method: "POST", path: "/v2/models/m/versions//infer", body: infer, header: secret},
		{name: "infer, escaped path", method: "POST", path: "/v2/models/m/%69nfer", body: infer, header: secret},
		{name: "infer of another model", method: "POST", path: "/v2/models/mm/infer", body: infer, header: secret},
		{name: "infer without the secret", method: "POST", path: "/v2/models/m/infer", body: infer},
		{name: "infer with a wrong secret", method: "POST", path: "/v2/models/m/infer", body: infer, header: map[string]string{core.SecretHeader: "s4"}},
		{name: "infer with GET", method: "GET", path: "/v2/models/m/infer", header: secret},
		{name: "binary infer", method: "POST", path: "/v2/models/m/infer", body: string(bin),
			header: map[string]string{core.SecretHeader: "s3", oip.HeaderInferenceHeaderLength: binLen}},
		{name: "bad header length", method: "POST", path: "/v2/models/m/infer", body: infer,
			header: map[string]string{core.SecretHeader: "s3", oip.HeaderInferenceHeaderLength: "x"}},
		{name: "empty body", method: "POST", path: "/v2/models/m/infer", header: secret},
		{name: "invalid JSON", method: "POST", path: "/v2/models/m/infer", body: `{"inputs":[`, header: secret},
		{name: "JSON then bytes", method: "POST", path: "/v2/models/m/infer", body: infer + "xx", header: secret},
		{name: "wrong shape", method: "POST", path: "/v2/models/m/infer", body: `{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}`, header: secret},
		{name: "unknown output", method: "POST", path: "/v2/models/m/infer", body: `{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}],"outputs":[{"name":"nope"}]}`, header: secret},
		{name: "model failure", method: "POST", path: "/v2/models/m/infer", body: `{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[13,2]}]}`, header: secret},
		{name: "live", method: "GET", path: "/v2/health/live"},
		{name: "ready", method: "GET", path: "/v2/health/ready"},
		{name: "server metadata", method: "GET", path: "/v2", header: secret},
		{name: "model metadata", method: "GET", path: "/v2/models/m", header: secret},
		{name: "model metadata without the secret", method: "GET", path: "/v2/models/m"},
		{name: "model ready", method: "GET", path: "/v2/models/m/ready", header: secret},
		{name: "replica", method: "GET", path: "/ebb/v1/replica"},
		{name: "no endpoint", method: "GET", path: "/nope", header: secret},
		{name: "POST to metadata", method: "POST", path: "/v2/models/m", body: "{}", header: secret},
		{name: "metrics", method: "GET", path: "/metrics", header: secret},
	}
	m := &fakeModel{width: 2, versions: nil}
	failing := &fakeModel{width: 2, predict: func(ctx context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
		if in[0].Data.([]float32)[0] == 13 {
			return nil, fmt.Errorf("thirteen")
		}
		return m.Predict(ctx, in)
	}}
	reg := prometheus.NewRegistry()
	s := New("m", failing, Options{Secret: "s3", ModelVersion: "m:3", Metrics: NewMetrics(reg, reg)})
	base := serveREST(t, s)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			hreq, err := http.NewRequest(tt.method, base+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
				hreq.Header.Set(k, v)
			}
			s.ServeHTTP(rec, req)
			resp, err := http.DefaultClient.Do(hreq)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != rec.Code || !bytes.Equal(body, rec.Body.Bytes()) {
				t.Errorf("served: %d %s\nServeHTTP: %d %s", resp.StatusCode, body, rec.Code, rec.Body)
			}
			for _, h := range []string{"Content-Type", oip.HeaderInferenceHeaderLength, "Allow"} {
				if got, want := resp.Header.Get(h), rec.Header().Get(h); got != want {
					t.Errorf("%s: served %q, ServeHTTP %q", h, got, want)
				}
			}
		})
	}
}

// serveREST runs s.Serve on a loopback port until the test ends.
func serveREST(t *testing.T, s *Server) string {
	t.Helper()
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// exchange writes raw on a new connection to base and reads the answer;
// closed reports whether the server closed the connection after it.
func exchange(t *testing.T, base, raw string) (resp *http.Response, body string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	resp, err = http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// A server that closes does so right after the answer.
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = r.ReadByte()
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	return resp, string(b), err != nil && !timeout // EOF, or reset with bytes unread
}

// TestServeLimits checks the limits of Serve's server on the wire: 413
// from Content-Length before a byte of the body, 413 for a chunked body
// past the limit, 408 for a body that does not come in time (each counted
// and closing the connection), 431 for headers too large, and an HTTP/1.0
// request answered in HTTP/1.0.
func TestServeLimits(t *testing.T) {
	row := `{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`
	tests := []struct {
		name      string
		raw       string
		want      int
		wantBody  string
		wantProto string
		counted   string // the limit counted; "": none
		closed    bool
	}{
		{name: "Content-Length over the limit, no body sent",
			raw:  "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1099511627776\r\n\r\n",
			want: 413, wantBody: "request body of 1099511627776 bytes is larger than the limit of 256 bytes", counted: limitBodyBytes, closed: true},
		{name: "Content-Length over the limit with Expect",
			raw:  "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 300\r\n\r\n",
			want: 413, wantBody: "larger than the limit of 256 bytes", counted: limitBodyBytes, closed: true},
		{name: "chunked body over the limit",
			raw:  "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n12c\r\n" + strings.Repeat(" ", 300) + "\r\n0\r\n\r\n",
			want: 413, wantBody: "request body is larger than the limit of 256 bytes", counted: limitBodyBytes, closed: true},
		{name: "body too slow",
			raw:  "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inputs\"",
			want: 408, wantBody: "request body did not arrive within 200ms", counted: limitBodyTimeout, closed: true},
		{name: "headers too large",
			raw:  "GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n",
			want: 431, closed: true},
		{name: "HTTP/1.0 infer",
			raw:  fmt.Sprintf("POST /v2/models/m/infer HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s", len(row), row),
			want: 200, wantBody: `"outputs":[`, wantProto: "HTTP/1.0", closed: true},
		{name: "kept alive",
			raw:  fmt.Sprintf("POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(row), row),
			want: 200, wantBody: `"outputs":[`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			metrics := NewMetrics(reg, reg)
			s := New("m", &fakeModel{width: 2}, Options{MaxRequestBytes: 256, Metrics: metrics,
				Limits: connlimit.Limits{BodyTimeout: 200 * time.Millisecond}})
			base := serveREST(t, s)
			resp, body, closed := exchange(t, base, tt.raw)
			if resp.StatusCode != tt.want || !strings.Contains(body, tt.wantBody) {
				t.Errorf("answer %d %s; want %d containing %q", resp.StatusCode, body, tt.want, tt.wantBody)
			}
			if tt.wantProto != "" && resp.Proto != tt.wantProto {
				t.Errorf("answered in %s; want %s", resp.Proto, tt.wantProto)
			}
			if closed != tt.closed {
				t.Errorf("connection closed after the answer: %v; want %v", closed, tt.closed)
			}
			for _, l := range []string{limitBodyBytes, limitBodyTimeout, limitElements} {
				want := 0.0
				if l == tt.counted {
					want = 1
				}
				if got := testutil.ToFloat64(metrics.limited.WithLabelValues(l)); got != want {
					t.Errorf("limited{%s} = %v; want %v", l, got, want)
				}
			}
		})
	}
}

// TestServeInferContextOnDrainTimeout: when the drain times out, a model
// still running sees its context end.
func TestServeInferContextOnDrainTimeout(t *testing.T) {
	entered := make(chan struct{})
	ended := make(chan struct{})
	m := &fakeModel{width: 2, predict: func(ctx context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
		close(entered)
		<-ctx.Done()
		close(ended)
		return nil, ctx.Err()
	}}
	s := New("m", m, Options{DrainTimeout: 50 * time.Millisecond})
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	go func() {
		resp, err := http.Post("http://"+ln.Addr().String()+"/v2/models/m/infer", "application/json",
			strings.NewReader(`{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`))
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	select {
	case <-ended:
		t.Fatal("the model's context ended before the drain")
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	if err := <-served; err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Errorf("Serve = %v; want a drain timeout", err)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the model's context did not end after the drain timed out")
	}
}

// TestServeCancelledAtOnce: a context that ends as Serve starts still
// drains cleanly and closes the listener.
func TestServeCancelledAtOnce(t *testing.T) {
	for range 20 {
		ln := listen(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		served := make(chan error, 1)
		go func() { served <- New("m", &fakeModel{width: 2}, Options{}).Serve(ctx, ln) }()
		select {
		case err := <-served:
			if err != nil {
				t.Fatalf("Serve = %v; want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return")
		}
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.Close()
			t.Fatal("the listener still accepts after Serve returned")
		}
	}
}
