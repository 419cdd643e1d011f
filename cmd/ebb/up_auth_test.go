package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// TestUpAuthByAddress checks what ebb up leaves open: inference and
// /metrics on a loopback address, nothing on another, everything with
// --auth=off.
func TestUpAuthByAddress(t *testing.T) {
	tests := []struct {
		addr, mode                 string
		inferenceOpen, metricsOpen bool
		wantErr                    string
	}{
		{"127.0.0.1:8080", "on", true, true, ""},
		{"localhost:0", "on", true, true, ""},
		{"0.0.0.0:8080", "on", false, false, ""},
		{":8080", "on", false, false, ""},
		{"10.1.2.3:8080", "on", false, false, ""},
		{"0.0.0.0:8080", "off", true, true, ""},
		{"127.0.0.1:8080", "maybe", false, false, "invalid --auth"},
	}
	for _, tt := range tests {
		t.Run(tt.addr+"/"+tt.mode, func(t *testing.T) {
			st, err := sqlite.Open(context.Background(), ":memory:")
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			dir := t.TempDir()
			o := upOptions{addr: tt.addr, grpcAddr: tt.addr, dataDir: dir, authMode: tt.mode}
			ua, err := newUpAuth(context.Background(), o, st, slog.New(slog.DiscardHandler))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("newUpAuth = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, adminTokenFile)); err != nil {
				t.Errorf("no admin token in the data dir: %v", err)
			}
			if open := ua.inference(tt.addr) == nil; open != tt.inferenceOpen {
				t.Errorf("inference open = %v, want %v", open, tt.inferenceOpen)
			}
			w := httptest.NewRecorder()
			ua.metrics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
			if open := w.Code == http.StatusOK; open != tt.metricsOpen {
				t.Errorf("/metrics without a token = %d, want open %v", w.Code, tt.metricsOpen)
			}
		})
	}
}
