package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
)

// wrk95 is a wrk run's summary with the 95th percentile, which the
// harness's summary lacks. Latencies are in microseconds.
type wrk95 struct {
	harness.WrkResult
	P95Us float64 `json:"p95Us"`
}

// wrk95Lua makes wrk POST the file named by the first script argument and
// print its summary as one JSON line, p95 included.
const wrk95Lua = `function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK95 {"requests":%d,"durationUs":%d,"bytes":%d,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"statusErrors":%d,"timeouts":%d,"meanUs":%.1f,"maxUs":%d,"p50Us":%d,"p90Us":%d,"p95Us":%d,"p99Us":%d,"p999Us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99), latency:percentile(99.9)))
end
`

// runWrk95 runs wrk like harness.Env.Wrk (pinned to the load CPUs, bounded
// by d) with a script that also reports p95.
func runWrk95(ctx context.Context, env *harness.Env, url string, body []byte, conns int, d time.Duration) (wrk95, error) {
	var r wrk95
	dir := filepath.Join(env.Work, "batching")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	script, bodyFile := filepath.Join(dir, "post95.lua"), filepath.Join(dir, "body.json")
	if err := os.WriteFile(script, []byte(wrk95Lua), 0o644); err != nil {
		return r, err
	}
	if err := os.WriteFile(bodyFile, body, 0o644); err != nil {
		return r, err
	}
	threads := max(1, min(env.LoadThreads, conns))
	secs := max(1, int(d.Round(time.Second)/time.Second))
	argv := []string{"wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(secs) + "s", "--timeout", "10s", "-s", script, url, "--", bodyFile}
	if env.LoadCPUs != "" {
		argv = append([]string{"taskset", "-c", env.LoadCPUs}, argv...)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return r, fmt.Errorf("wrk %s: %w: %s", url, err, out.String())
	}
	return parseWrk95(out.String())
}

// parseWrk95 reads the WRK95 line and wrk's "Non-2xx or 3xx responses".
func parseWrk95(out string) (wrk95, error) {
	var r wrk95
	found := false
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if s, ok := strings.CutPrefix(line, "WRK95 "); ok {
			if err := json.Unmarshal([]byte(s), &r); err != nil {
				return r, fmt.Errorf("wrk summary %q: %w", s, err)
			}
			found = true
		}
		if s, ok := strings.CutPrefix(line, "Non-2xx or 3xx responses:"); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
				r.Non2xx = n
			}
		}
	}
	if !found {
		return r, errors.New("wrk printed no summary: " + out)
	}
	return r, nil
}
