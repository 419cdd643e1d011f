package harness

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed post.lua
var postLua []byte

// WrkRun is one wrk run: closed-loop load at fixed concurrency for a fixed
// time, POSTing Body to URL (with its token, for a URL from BearerURL).
type WrkRun struct {
	URL         string
	Body        []byte
	Connections int
	Duration    time.Duration
}

// WrkResult is what wrk measured. Latencies are in microseconds.
type WrkResult struct {
	Requests      int64   `json:"requests"`
	DurationUs    int64   `json:"durationUs"`
	Bytes         int64   `json:"bytes"`
	ConnectErrors int64   `json:"connectErrors"`
	ReadErrors    int64   `json:"readErrors"`
	WriteErrors   int64   `json:"writeErrors"`
	StatusErrors  int64   `json:"statusErrors"`
	Timeouts      int64   `json:"timeouts"`
	MeanUs        float64 `json:"meanUs"`
	MaxUs         float64 `json:"maxUs"`
	P50Us         float64 `json:"p50Us"`
	P90Us         float64 `json:"p90Us"`
	P95Us         float64 `json:"p95Us"`
	P99Us         float64 `json:"p99Us"`
	P999Us        float64 `json:"p999Us"`
	// Non2xx counts responses outside 2xx/3xx, from wrk's own report.
	Non2xx int64 `json:"non2xx"`
}

// RPS is requests per second.
func (r WrkResult) RPS() float64 {
	if r.DurationUs == 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUs) / 1e6)
}

// Errors is the number of failed requests of any kind.
func (r WrkResult) Errors() int64 {
	return r.ConnectErrors + r.ReadErrors + r.WriteErrors + r.Timeouts + max(r.StatusErrors, r.Non2xx)
}

// Wrk runs wrk pinned to the load CPUs. The run is bounded by Duration (and
// killed 30s past it).
func (e *Env) Wrk(ctx context.Context, run WrkRun) (WrkResult, error) {
	script := filepath.Join(e.Work, "post.lua")
	if _, err := os.Stat(script); err != nil {
		if err := os.WriteFile(script, postLua, 0o644); err != nil {
			return WrkResult{}, err
		}
	}
	bodyFile := filepath.Join(e.Work, fmt.Sprintf("body-%x.json", hash(run.Body)))
	if _, err := os.Stat(bodyFile); err != nil {
		if err := os.WriteFile(bodyFile, run.Body, 0o644); err != nil {
			return WrkResult{}, err
		}
	}
	threads := max(1, min(e.LoadThreads, run.Connections))
	secs := max(1, int(run.Duration.Round(time.Second)/time.Second))
	url, token := splitBearer(run.URL) // post.lua sends the token
	argv := []string{"wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(run.Connections),
		"-d", strconv.Itoa(secs) + "s", "--timeout", "10s", "-s", script, url, "--", bodyFile, token}
	if e.LoadCPUs != "" {
		argv = append([]string{"taskset", "-c", e.LoadCPUs}, argv...)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return WrkResult{}, fmt.Errorf("wrk %s: %w: %s", run.URL, err, out.String())
	}
	return parseWrk(out.String())
}

// parseWrk reads the WRKJSON line printed by post.lua and wrk's
// "Non-2xx or 3xx responses" line.
func parseWrk(out string) (WrkResult, error) {
	var r WrkResult
	found := false
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if s, ok := strings.CutPrefix(line, "WRKJSON "); ok {
			if err := json.Unmarshal([]byte(s), &r); err != nil {
				return r, fmt.Errorf("wrk summary %q: %w", s, err)
			}
			found = true
		}
		if s, ok := strings.CutPrefix(line, "Non-2xx or 3xx responses:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err == nil {
				r.Non2xx = n
			}
		}
	}
	if !found {
		return r, errors.New("wrk printed no summary: " + out)
	}
	return r, nil
}

func hash(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}
