// Package jaegertest runs a real Jaeger v2 (an OpenTelemetry Collector
// build with an in-memory trace store and Jaeger's query API) for tests
// that export traces over OTLP and read them back: the binary that
// hack/build-jaeger.sh builds from the Go module proxy, found through
// $EBB_JAEGER or that script's cache. Without it a test is skipped, or
// fails when $CI is "true".
package jaegertest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Jaeger is a Jaeger v2 all-in-one on loopback ports.
type Jaeger struct {
	OTLPGRPC, OTLPHTTP string // host:port of the OTLP receivers
	Query              string // http://host:port of the query API
}

// jaegerBinary returns the jaeger binary: $EBB_JAEGER, else the one
// hack/build-jaeger.sh leaves in its cache.
func jaegerBinary() (string, bool) {
	p := os.Getenv("EBB_JAEGER")
	if p == "" {
		dir := os.Getenv("EBB_TOOLS_BIN")
		if dir == "" {
			cache := os.Getenv("XDG_CACHE_HOME")
			if cache == "" {
				home, _ := os.UserHomeDir()
				cache = filepath.Join(home, ".cache")
			}
			dir = filepath.Join(cache, "ebb-tools", "bin")
		}
		p = filepath.Join(dir, "jaeger")
	}
	fi, err := os.Stat(p)
	return p, err == nil && fi.Mode()&0o111 != 0
}

// Start starts jaeger for the test and stops it, by its PID, when the
// test ends. Without the binary the test is skipped, or fails when $CI is
// "true".
func Start(t *testing.T) *Jaeger {
	t.Helper()
	bin, ok := jaegerBinary()
	if !ok {
		msg := "jaeger is not built; run hack/build-jaeger.sh (several minutes, once) or set EBB_JAEGER to the binary"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	var lastErr error
	for range 3 { // a free port can be taken between probe and bind
		j, err := tryJaeger(t, bin)
		if err == nil {
			return j
		}
		lastErr = err
	}
	t.Fatalf("starting jaeger: %v", lastErr)
	return nil
}

// jaegerConfig binds every listener to 127.0.0.1 and turns off the
// collector's own metrics server.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: %s
    grpc:
      endpoint: %s
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

func tryJaeger(t *testing.T, bin string) (*Jaeger, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	j := &Jaeger{OTLPGRPC: ports[2], OTLPHTTP: ports[3], Query: "http://" + ports[0]}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, ports[0], ports[1], ports[2], ports[3]), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "jaeger.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "--config", "file:"+cfg)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if j.ready() {
			t.Cleanup(stop)
			t.Cleanup(func() {
				if t.Failed() {
					out, _ := os.ReadFile(logPath)
					t.Logf("jaeger's log:\n%s", out)
				}
			})
			return j, nil
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("jaeger exited (%v): %s", err, out)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			stop()
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("jaeger did not answer within 30s: %s", out)
		}
	}
}

// ready reports whether the query API answers and both receivers accept
// connections.
func (j *Jaeger) ready() bool {
	resp, err := http.Get(j.Query + "/api/services")
	if err != nil {
		return false
	}
	resp.Body.Close()
	for _, a := range []string{j.OTLPGRPC, j.OTLPHTTP} {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			return false
		}
		c.Close()
	}
	return resp.StatusCode == http.StatusOK
}

func freePorts(n int) ([]string, error) {
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// Jaeger's query API (api/traces), the parts tests read.
type traces struct {
	Data []Trace `json:"data"`
}

// Trace is one trace as the query API returns it.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

// Span is one span of a Trace. Its References are its parent (CHILD_OF)
// and its links (FOLLOWS_FROM).
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	StartTime     int64       `json:"startTime"` // µs since the epoch
	Duration      int64       `json:"duration"`  // µs
	Tags          []Tag       `json:"tags"`
	ProcessID     string      `json:"processID"`
}

// Reference is a span's parent or link.
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// Tag is an attribute; numbers are float64.
type Tag struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// Process is the resource of a span: its service and attributes.
type Process struct {
	ServiceName string `json:"serviceName"`
	Tags        []Tag  `json:"tags"`
}

// TagMap returns tags by key.
func TagMap(tags []Tag) map[string]any {
	m := make(map[string]any, len(tags))
	for _, t := range tags {
		m[t.Key] = t.Value
	}
	return m
}

// WaitTrace polls the query API for service's traces until one has the
// trace id and at least want spans, and returns it; the test fails after
// 30s.
func (j *Jaeger) WaitTrace(t *testing.T, service, traceID string, want int) Trace {
	t.Helper()
	return j.wait(t, "/api/traces?service="+url.QueryEscape(service)+"&limit=20&lookback=1h", traceID, want)
}

// WaitTraceID polls the query API for the trace of traceID until it has
// at least want spans, and returns it; the test fails after 30s.
func (j *Jaeger) WaitTraceID(t *testing.T, traceID string, want int) Trace {
	t.Helper()
	return j.wait(t, "/api/traces/"+traceID, traceID, want)
}

func (j *Jaeger) wait(t *testing.T, path, traceID string, want int) Trace {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last traces
	for time.Now().Before(deadline) {
		resp, err := http.Get(j.Query + path)
		if err != nil {
			t.Fatal(err)
		}
		last = traces{}
		err = json.NewDecoder(resp.Body).Decode(&last)
		resp.Body.Close()
		if err != nil && resp.StatusCode == http.StatusOK {
			t.Fatal(err)
		}
		for _, tr := range last.Data {
			if tr.TraceID == traceID && len(tr.Spans) >= want {
				return tr
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("jaeger has no trace %s with %d spans at %s; last answer: %+v", traceID, want, path, last)
	return Trace{}
}
