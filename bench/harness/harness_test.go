package harness

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type named string

func (n named) Name() string                              { return string(n) }
func (n named) Title() string                             { return strings.ToUpper(string(n)) }
func (n named) Run(context.Context, *Env) (Result, error) { return Result{}, nil }

func TestRegistrySelect(t *testing.T) {
	r := &Registry{}
	for _, n := range []string{"proxy", "model", "coldstart"} {
		if err := r.Register(named(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Register(named("model")); err == nil {
		t.Error("registering a name twice succeeded")
	}
	tests := []struct {
		list    string
		want    []string
		wantErr bool
	}{
		{list: "", want: []string{"proxy", "model", "coldstart"}},
		{list: "all", want: []string{"proxy", "model", "coldstart"}},
		{list: "coldstart,proxy", want: []string{"proxy", "coldstart"}},
		{list: " model ", want: []string{"model"}},
		{list: "proxy,nope", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			got, err := r.Select(tt.list)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Select(%q) error = %v, want error %v", tt.list, err, tt.wantErr)
			}
			var names []string
			for _, s := range got {
				names = append(names, s.Name())
			}
			if diff := cmp.Diff(tt.want, names); diff != "" {
				t.Errorf("Select(%q) (-want +got):\n%s", tt.list, diff)
			}
		})
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 2s test @ http://127.0.0.1:1/v2/models/noop/infer
  1 threads and 64 connections
  Non-2xx or 3xx responses: 7
Requests/sec:  14782.20
WRKJSON {"requests":29589,"durationUs":2001643,"bytes":100,"connectErrors":0,"readErrors":1,"writeErrors":0,"statusErrors":7,"timeouts":2,"meanUs":4100.5,"maxUs":11377,"p50Us":4081,"p90Us":6000,"p95Us":9000,"p99Us":11000,"p999Us":11300}
`
	got, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	want := WrkResult{Requests: 29589, DurationUs: 2001643, Bytes: 100, ReadErrors: 1, StatusErrors: 7, Timeouts: 2,
		MeanUs: 4100.5, MaxUs: 11377, P50Us: 4081, P90Us: 6000, P95Us: 9000, P99Us: 11000, P999Us: 11300, Non2xx: 7}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseWrk (-want +got):\n%s", diff)
	}
	if got.Errors() != 10 {
		t.Errorf("Errors() = %d, want 10", got.Errors())
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused"); err == nil {
		t.Error("parseWrk without a summary succeeded")
	}
}

func TestQuantileAndMedian(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name string
		ds   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, .5, 0},
		{"p50 odd", ms(5, 1, 3), .5, 3 * time.Millisecond},
		{"p50 even is the lower middle", ms(4, 1, 3, 2), .5, 2 * time.Millisecond},
		{"p99 of 10 is the max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), .99, 10 * time.Millisecond},
		{"p90 of 10", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), .9, 9 * time.Millisecond},
		{"max", ms(2, 7, 1), 1, 7 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Quantile(tt.ds, tt.q); got != tt.want {
				t.Errorf("Quantile(%v, %v) = %v, want %v", tt.ds, tt.q, got, tt.want)
			}
		})
	}
	if got := Median([]float64{3, 1, 2, 10}); got != 2.5 {
		t.Errorf("Median = %v, want 2.5", got)
	}
}

func TestMarkdownReportsUnmetGoalsAndFailures(t *testing.T) {
	r := &Report{
		Command: "make bench",
		Scenarios: []Outcome{
			{Name: "a", Title: "A", Result: Result{Goals: []Goal{
				{Name: "fast", Target: "≥ 0.9×", Ebb: 50, Peer: 100, PeerName: "nginx", Unit: "req/s", Ratio: 0.5, Met: false},
				{Name: "small", Target: "≤ 1 ms", Ebb: 0.5, Unit: "ms", Met: true},
			}}},
			{Name: "b", Title: "B", Error: "ebb exited\nlog: boom"},
		},
	}
	md := r.Markdown()
	for _, want := range []string{
		"| A | fast | ≥ 0.9× | 50.00 req/s | nginx: 100.0 req/s | 0.50× | **NOT MET** |",
		"| A | small | ≤ 1 ms | 0.500 ms | — | — | **MET** |",
		"| B | (scenario failed) |",
		"**The scenario failed:** `ebb exited ⏎ log: boom`",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q; got:\n%s", want, md)
		}
	}
}

func TestStopKillsLeftoverDescendants(t *testing.T) {
	env := &Env{Work: t.TempDir(), Out: io.Discard}
	// The shell ignores SIGTERM's effect on its background child: the
	// child (a second sleep) outlives the shell and must be found and
	// killed by PID.
	p, err := env.Start(StartOptions{Name: "sh"}, "sh", "-c", "sleep 60 & echo started; wait")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(p.Tree()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	tree := p.Tree()
	if len(tree) < 2 {
		t.Fatalf("Tree() = %v, want the shell and its sleep", tree)
	}
	left := env.StopAll()
	if len(left) != 1 || !strings.Contains(left[0], "sleep") {
		t.Errorf("StopAll() leftovers = %q, want the one sleep", left)
	}
	// SIGKILL is delivered asynchronously; give the kernel a moment.
	running := func(pid int) bool {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err != nil {
			return false
		}
		f, err := statFields(pid)
		return err == nil && f[0] != "Z" && f[0] != "X"
	}
	for _, pid := range tree {
		deadline := time.Now().Add(2 * time.Second)
		for running(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if running(pid) {
			t.Errorf("pid %d still runs after StopAll", pid)
		}
	}
}
