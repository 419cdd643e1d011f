package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strconv"
	"time"
)

// seqClient sends one POST at a time on one kept-alive HTTP/1.1
// connection, from the calling goroutine, for latency runs.
//
// net/http's Transport hands every request from the caller to the
// connection's write goroutine and the answer back from its read
// goroutine. At one request at a time those handoffs are scheduler
// wake-ups inside the measured time: on a 2-CPU machine, alternating the
// two clients request by request against one replica, net/http's p50 was
// 121-135 µs and p99 194-237 µs, this one's 71-85 µs and 137-165 µs: the
// difference is the client's, and it widened every target's tail. Here the request's bytes are built once and the
// answer is read in place (http.ReadResponse, so chunked answers and
// "Connection: close" are handled), so the time is the server's and the
// kernel's, the same client for every target.
type seqClient struct {
	addr    string
	req     []byte
	timeout time.Duration
	conn    net.Conn
	br      *bufio.Reader
}

// newSeqClient prepares POSTs of body to rawURL, an http:// URL, which may
// carry a token from BearerURL.
func newSeqClient(rawURL string, body []byte, timeout time.Duration) (*seqClient, error) {
	plain, token := splitBearer(rawURL)
	u, err := neturl.Parse(plain)
	if err != nil {
		return nil, fmt.Errorf("latency client: %w", err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("latency client: %s: only http:// URLs are supported", plain)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	req := []byte("POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n")
	if token != "" {
		req = append(req, "Authorization: Bearer "+token+"\r\n"...)
	}
	req = append(req, "\r\n"...)
	req = append(req, body...)
	return &seqClient{addr: addr, req: req, timeout: timeout}, nil
}

// post sends the request and reads the whole answer. It returns the status
// and the time from writing the request to the answer's last byte; a
// failed or closing connection is dropped and the next post dials again.
func (c *seqClient) post(ctx context.Context) (int, time.Duration, error) {
	if c.conn == nil {
		d := net.Dialer{Timeout: c.timeout}
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return 0, 0, err
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 16<<10)
	}
	if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		c.Close()
		return 0, 0, err
	}
	start := time.Now()
	code, err := c.exchange()
	d := time.Since(start)
	if err != nil {
		c.Close()
	}
	return code, d, err
}

func (c *seqClient) exchange() (int, error) {
	if _, err := c.conn.Write(c.req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		// The answer is whole; the server ends the connection after it.
		c.Close()
	}
	return resp.StatusCode, err
}

// Close closes the connection, if any.
func (c *seqClient) Close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.br = nil, nil
	}
}
