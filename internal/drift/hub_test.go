package drift

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ebb-ml/ebb/internal/monitor"
)

// Two gateways count their own traffic and ship their windows to the
// operator's hub over HTTP; the hub reports what one monitor that saw all
// of it reports.
func TestHubMergesGateways(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1e9, 0))
	opts := monitor.WindowOptions{Clock: clk}
	p := testProfile(t)
	entries := []Entry{{Deployment: "d", Version: "m:3", ProfileID: "p1", Profile: p}}
	hub := NewHub(opts)
	woken := 0
	hub.Missed = func() { woken++ }
	hub.Set(entries)
	srv := httptest.NewServer(hub.Handler())
	defer srv.Close()

	all := NewMonitor(opts)
	all.Set(entries)
	var gws []*Remote
	for i, name := range []string{"gw-a", "gw-b"} {
		r := &Remote{Gateway: name, Base: srv.URL, HTTP: srv.Client(), Monitor: NewMonitor(opts)}
		if err := r.Poll(context.Background(), i == 1); err != nil {
			t.Fatal(err)
		}
		if got := r.Monitor.Entries(); len(got) != 1 || got[0].Version != "m:3" {
			t.Fatalf("%s watches %+v after a poll; want m:3", name, got)
		}
		recs := records(t, 100+100*i, 1.5*float64(i), true, uint64(10+i))
		for _, m := range []*Monitor{r.Monitor, all} {
			if err := NewSink(m, nil, nil, nil).Write(recs); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Ship(context.Background()); err != nil {
			t.Fatal(err)
		}
		gws = append(gws, r)
	}
	if woken != 1 {
		t.Errorf("the hub was asked to sync %d times; want 1 (the poll with missed)", woken)
	}
	approx := cmpopts.EquateApprox(0, 1e-9)
	if diff := cmp.Diff(all.Reports("d"), hub.Reports("d"), approx); diff != "" {
		t.Errorf("hub reports (-one monitor +hub):\n%s", diff)
	}
	if got := hub.Reports("d")[0].Rows; got != 1500 {
		t.Errorf("hub rows = %d; want 1500", got)
	}

	// Shipping again replaces, never adds.
	if err := gws[0].Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := hub.Reports("d")[0].Rows; got != 1500 {
		t.Errorf("hub rows after a repeated report = %d; want 1500", got)
	}

	// The metrics are the hub's merged reports.
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(hub))
	if got := metricValue(t, reg, "ebb_drift_window_rows", map[string]string{"deployment": "d", "version": "m:3"}); got != 1500 {
		t.Errorf("ebb_drift_window_rows = %v; want 1500", got)
	}
	if got := metricValue(t, reg, "ebb_drift_status", map[string]string{"deployment": "d", "version": "m:3", "feature": "b"}); got != float64(monitor.StatusDrift) {
		t.Errorf("ebb_drift_status{feature=b} = %v; want %d", got, monitor.StatusDrift)
	}
	if got := metricValue(t, reg, "ebb_drift_score", map[string]string{"deployment": "d", "version": "m:3", "feature": "b", "stat": "psi"}); got < 0.25 {
		t.Errorf("ebb_drift_score{feature=b,stat=psi} = %v; want over 0.25", got)
	}

	// A poll with the current ETag changes nothing; a new profile list
	// reaches the gateway, and windows of the old profile are left out.
	if err := gws[0].Poll(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	hub.Set([]Entry{{Deployment: "d", Version: "m:3", ProfileID: "p2", Profile: p}})
	if err := gws[1].Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := hub.Reports("d")[0].Rows; got != 0 {
		t.Errorf("rows of a new profile before the gateways polled = %d; want 0", got)
	}
	if err := gws[1].Poll(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if got := gws[1].Monitor.Entries()[0].ProfileID; got != "p2" {
		t.Errorf("gateway's profile after a poll = %s; want p2", got)
	}

	// A gateway silent for a window's span is forgotten.
	hub.Set(entries)
	for _, r := range gws {
		r.Monitor.Set(entries)
	}
	if err := gws[0].Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Step(61 * time.Minute)
	if err := hub.Receive(WindowsReport{Gateway: "gw-c"}); err != nil {
		t.Fatal(err)
	}
	hub.mu.Lock()
	n := len(hub.gws)
	hub.mu.Unlock()
	if n != 1 {
		t.Errorf("%d gateways kept after an hour of silence; want only the one that reported", n)
	}
}

func TestHubRefusesBadWindows(t *testing.T) {
	p := testProfile(t)
	hub := NewHub(monitor.WindowOptions{})
	hub.Set([]Entry{{Deployment: "d", Version: "m:3", ProfileID: "p1", Profile: p}})
	srv := httptest.NewServer(hub.Handler())
	defer srv.Close()
	tests := []struct {
		name, body string
	}{
		{"not JSON", `{`},
		{"no gateway", `{"windows":[]}`},
		{"wrong shape", `{"gateway":"g","windows":[{"deployment":"d","version":"m:3","profileID":"p1","snapshot":{"subWindow":600000000000,"blocks":[{"epoch":1,"rows":1,"counts":[1],"missing":[0],"sums":[0]}]}}]}`},
		{"other sub-window", `{"gateway":"g","windows":[{"deployment":"d","version":"m:3","profileID":"p1","snapshot":{"subWindow":1,"blocks":[]}}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+WindowsPath, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status %d; want 400", resp.StatusCode)
			}
		})
	}
}
