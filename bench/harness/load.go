package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	neturl "net/url"
	"slices"
	"sync"
	"time"
)

// BearerURL returns rawURL carrying token as its user info
// ("http://bearer:TOKEN@host/..."): Post and Wrk send such a URL's token as
// "Authorization: Bearer TOKEN", and the URL without it.
func BearerURL(rawURL, token string) string {
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	u.User = neturl.UserPassword("bearer", token)
	return u.String()
}

// splitBearer undoes BearerURL: it returns rawURL without its user info,
// and the token ("" when it carries none).
func splitBearer(rawURL string) (string, string) {
	u, err := neturl.Parse(rawURL)
	if err != nil || u.User == nil || u.User.Username() != "bearer" {
		return rawURL, ""
	}
	tok, _ := u.User.Password()
	u.User = nil
	return u.String(), tok
}

// Post sends one POST with a JSON body and returns the status, the body
// and the time from sending to the last byte of the response. A URL from
// BearerURL sends its token.
func Post(ctx context.Context, c *http.Client, url string, body []byte) (int, []byte, time.Duration, error) {
	url, token := splitBearer(url)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, time.Since(start), err
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, out, time.Since(start), err
}

// Sequential sends up to n requests one after another on a kept-alive
// connection, stopping early after maxTime, and returns the latencies of
// those that answered 200 and the number that did not.
func Sequential(ctx context.Context, url string, body []byte, n int, maxTime time.Duration) (lat []time.Duration, failed int) {
	c := &http.Client{Timeout: 30 * time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(maxTime)
	for i := 0; i < n && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		code, _, d, err := Post(ctx, c, url, body)
		if err != nil || code != http.StatusOK {
			failed++
			continue
		}
		lat = append(lat, d)
	}
	return lat, failed
}

// BurstResult is the outcome of a burst of concurrent requests.
type BurstResult struct {
	Latencies []time.Duration
	// Codes counts responses by HTTP status; 0 counts transport errors.
	Codes map[int]int
	// FirstError is the first failure seen, for the report.
	FirstError string
}

// Burst sends n requests at once, each on its own connection, and waits for
// all of them (each bounded by timeout).
func Burst(ctx context.Context, url string, body []byte, n int, timeout time.Duration) BurstResult {
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: timeout}
	res := BurstResult{Codes: map[int]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code, out, d, err := Post(ctx, c, url, body)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				res.Codes[0]++
				if res.FirstError == "" {
					res.FirstError = err.Error()
				}
			case code != http.StatusOK:
				res.Codes[code]++
				if res.FirstError == "" {
					res.FirstError = fmt.Sprintf("HTTP %d: %.300s", code, out)
				}
			default:
				res.Codes[code]++
			}
			res.Latencies = append(res.Latencies, d)
		}()
	}
	close(start)
	wg.Wait()
	return res
}

// Quantile returns the q-quantile (0..1) of ds by nearest rank, 0 for none.
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Median returns the median of xs (the mean of the middle two for even
// counts), 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Ms converts a duration to milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Interleaved measures the latency of several servers under the same
// conditions: it sends one request at a time, visiting the URLs in turn
// (rotating which goes first), each on its own kept-alive connection sent
// to from this goroutine (seqClient), up to n requests per URL or until
// maxTime. Disturbances on the machine then fall
// on every server alike. It returns the latencies of the 200 answers per
// URL and the count of failures per URL, or an error for a URL it cannot
// send to.
func Interleaved(ctx context.Context, urls []string, body []byte, n int, maxTime time.Duration) (lat [][]time.Duration, failed []int, err error) {
	clients := make([]*seqClient, len(urls))
	for i, u := range urls {
		if clients[i], err = newSeqClient(u, body, 30*time.Second); err != nil {
			return nil, nil, err
		}
		defer clients[i].Close()
	}
	lat = make([][]time.Duration, len(urls))
	failed = make([]int, len(urls))
	deadline := time.Now().Add(maxTime)
	for round := 0; round < n && time.Now().Before(deadline) && ctx.Err() == nil; round++ {
		for k := range urls {
			i := (round + k) % len(urls)
			code, d, err := clients[i].post(ctx)
			if err != nil || code != http.StatusOK {
				failed[i]++
				continue
			}
			lat[i] = append(lat[i], d)
		}
	}
	return lat, failed, nil
}
