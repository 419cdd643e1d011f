package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/engine/httpproxy/openaitest"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// TestOpenAISplit: an OpenAI deployment that splits its traffic (a canary
// of a new LLM) routes each request to a track as OIP requests are routed:
// pinned by Ebb-Version, stuck by Ebb-Route-Key, else by weight; the answer
// names the track, and the canary's Meter counts what the rollout judges.
func TestOpenAISplit(t *testing.T) {
	v1 := openAIReplica(t, "m-1", "m", openaitest.Options{Name: "up-v1", Models: []string{"m"}})
	canary := openAIReplica(t, "m-canary-1", "m.canary", openaitest.Options{Name: "up-canary", Models: []string{"m"}})
	split, err := routing.NewSplit([]routing.Track{{Key: "m", Tag: "v1", Weight: 50}, {Key: "m.canary", Tag: "canary", Weight: 50}})
	if err != nil {
		t.Fatal(err)
	}
	primary := openAIRoute("m", v1)
	primary.Split = split
	track := openAIRoute("m.canary", canary)
	meter := traffic.NewMeter(time.Minute, time.Second)
	track.Meter = meter
	f := newOpenAIFixture(t, nil, primary, track)
	const body = `{"model":"m","prompt":"hello there"}`

	post := func(t *testing.T, header map[string]string) (int, string, answer) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, f.url+"/openai/v1/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get(VersionHeader), decodeAnswer(t, b)
	}

	t.Run("pinned", func(t *testing.T) {
		for _, tt := range []struct{ pin, wantServer string }{{"canary", "up-canary"}, {"v1", "up-v1"}} {
			code, served, a := post(t, map[string]string{VersionHeader: tt.pin})
			if code != http.StatusOK || a.Fingerprint != tt.wantServer || served != tt.pin {
				t.Errorf("pin %s: %d from %q, %s %q; want 200 from %q", tt.pin, code, a.Fingerprint, VersionHeader, served, tt.wantServer)
			}
		}
	})
	t.Run("unknown pin is an OpenAI 404", func(t *testing.T) {
		code, _, a := post(t, map[string]string{VersionHeader: "v9"})
		if code != http.StatusNotFound || a.Error == nil || a.Error.Message == "" {
			t.Fatalf("pin v9: %d %+v; want 404 with an OpenAI error", code, a.Error)
		}
	})
	t.Run("sticky key", func(t *testing.T) {
		_, first, _ := post(t, map[string]string{RouteKeyHeader: "user-42"})
		for range 20 {
			if _, got, _ := post(t, map[string]string{RouteKeyHeader: "user-42"}); got != first {
				t.Fatalf("key user-42 served by %q, then %q", first, got)
			}
		}
	})
	t.Run("by weight, both tracks", func(t *testing.T) {
		seen := map[string]int{}
		for range 60 {
			_, served, _ := post(t, nil)
			seen[served]++
		}
		if seen["v1"] == 0 || seen["canary"] == 0 {
			t.Fatalf("60 requests at 50/50 served by %v; want both tracks", seen)
		}
	})
	t.Run("models list the deployment, not its tracks", func(t *testing.T) {
		_, b := f.get(t, "/openai/v1/models", "")
		if got := string(b); !strings.Contains(got, `"id":"m"`) || strings.Contains(got, "m.canary") {
			t.Fatalf("GET /openai/v1/models = %s; want m and not m.canary", got)
		}
	})
	t.Run("canary meter counts its requests", func(t *testing.T) {
		m := meter.Snapshot(time.Time{}, time.Now())
		if m.Requests == 0 || m.Errors != 0 {
			t.Fatalf("canary meter: %+v; want requests and no errors", m)
		}
	})
}
