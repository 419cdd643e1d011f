package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
)

// TestUpMaxBodyBytes: --max-body-bytes defaults to 64 MiB, is checked, and
// reaches the replicas ebb up starts.
func TestUpMaxBodyBytes(t *testing.T) {
	tests := []struct {
		args    []string
		want    int64
		wantErr bool
	}{
		{args: nil, want: 64 << 20},
		{args: []string{"--max-body-bytes=1048576"}, want: 1 << 20},
		{args: []string{"--max-body-bytes", "2147483647"}, want: 1<<31 - 1},
		{args: []string{"--max-body-bytes=0"}, wantErr: true},
		{args: []string{"--max-body-bytes=-1"}, wantErr: true},
		{args: []string{"--max-body-bytes=2147483648"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var l upLimits
			f := pflag.NewFlagSet("up", pflag.ContinueOnError)
			addUpLimitFlags(f, &l)
			if err := f.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := l.check()
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "--max-body-bytes") {
					t.Errorf("check() = %v; want an error naming --max-body-bytes", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("check() = %v", err)
			}
			if l.maxBodyBytes != tt.want {
				t.Errorf("maxBodyBytes = %d; want %d", l.maxBodyBytes, tt.want)
			}
			args := l.replicaArgs()
			if i := slices.Index(args, "--max-body-bytes"); i < 0 || i+1 >= len(args) || args[i+1] != fmt.Sprint(tt.want) {
				t.Errorf("replica args %q; want --max-body-bytes %d", args, tt.want)
			}
		})
	}
}

// TestAdminListenerCapped: the --admin-addr listener applies --max-conns as
// the main listener does, each wait counted in
// ebb_gateway_limited_total{limit="conns"}.
func TestAdminListenerCapped(t *testing.T) {
	tests := []struct {
		name     string
		maxConns int
		wantWait bool
	}{
		{name: "under the cap, no wait", maxConns: 4},
		{name: "over the cap, the second waits", maxConns: 1, wantWait: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := upOptions{adminAddr: "127.0.0.1:0"}
			o.limits = connlimit.Limits{MaxConns: tt.maxConns, IdleTimeout: 300 * time.Millisecond}
			reg := prometheus.NewRegistry()
			m := gateway.NewMetrics(reg)
			gw := gateway.New(&routing.Table{}, nil, gateway.Options{Limits: o.limits, Metrics: m})
			ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
			adm, err := listenAdmin(o, ok, nil, gw.Listener)
			if err != nil {
				t.Fatal(err)
			}
			go adm.serve()
			t.Cleanup(func() { adm.srv.Close() })

			get := func() time.Duration {
				t.Helper()
				start := time.Now()
				c, err := net.Dial("tcp", adm.addr())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				fmt.Fprintf(c, "GET /v1/x HTTP/1.1\r\nHost: %s\r\n\r\n", adm.addr())
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("no answer: %v", err)
				}
				resp.Body.Close()
				return time.Since(start)
			}
			get() // the first connection stays open, idle
			waited := get()
			if tt.wantWait && waited < 200*time.Millisecond {
				t.Errorf("second connection answered after %v; want it to wait for the first to close (idle timeout 300ms)", waited)
			}
			if !tt.wantWait && waited > 200*time.Millisecond {
				t.Errorf("second connection answered after %v; want at once", waited)
			}
			want := 0.0
			if tt.wantWait {
				want = 1
			}
			if got := gatewayLimited(t, reg, "conns"); got < want || (want == 0 && got != 0) {
				t.Errorf("limited{conns} = %v; want %v", got, want)
			}
		})
	}
}

// gatewayLimited reads ebb_gateway_limited_total{limit} from reg.
func gatewayLimited(t *testing.T, reg *prometheus.Registry, limit string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ebb_gateway_limited_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "limit" && lp.GetValue() == limit {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no ebb_gateway_limited_total{limit=%q}", limit)
	return 0
}
