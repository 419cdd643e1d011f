package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/routing"
)

// TestFallbackRequestStringsAreOwn: what a fallback handler keeps of a
// request (a token as a cache key, a path, a header's name) still reads
// the same after later requests on the same connection: the adaptor's
// strings point into buffers the server reuses, and a token verifier that
// kept one as a cache key answered for another token.
func TestFallbackRequestStringsAreOwn(t *testing.T) {
	var mu sync.Mutex
	var kept [][4]string
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		var key string
		for k := range r.Header {
			if strings.HasPrefix(k, "X-Header-") {
				key = k
			}
		}
		mu.Lock()
		kept = append(kept, [4]string{r.Header.Get("Authorization"), r.URL.Path, r.Host, key})
		mu.Unlock()
		io.WriteString(w, "ok")
	})
	f := newFrontFixture(t, routing.Route{Deployment: "m"}, time.Second, Options{HoldTimeout: time.Second}, mux)
	c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}} // one kept-alive connection
	const n = 20
	var want [][4]string
	for i := range n {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/v1/things/thing-%03d", f.addr, i), nil)
		req.Host = fmt.Sprintf("host-%03d.example", i)
		req.Header.Set("Authorization", fmt.Sprintf("Bearer ebb_%016d_%064d", i, i))
		key := fmt.Sprintf("X-Header-%03d", i)
		req.Header.Set(key, "v")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		want = append(want, [4]string{req.Header.Get("Authorization"), req.URL.Path, req.Host, key})
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range want {
		if i >= len(kept) || kept[i] != want[i] {
			t.Errorf("request %d: the handler kept %q, which now reads differently from what was sent, %q", i, kept[i], want[i])
		}
	}
}
