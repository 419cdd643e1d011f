package logging

import (
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	defer slog.SetDefault(slog.Default())
	for _, tt := range []struct {
		level   string
		enabled slog.Level // the lowest level logged
		wantErr string
	}{
		{level: "debug", enabled: slog.LevelDebug},
		{level: "info", enabled: slog.LevelInfo},
		{level: "WARN", enabled: slog.LevelWarn},
		{level: "error", enabled: slog.LevelError},
		{level: "loud", wantErr: `invalid --log-level "loud": use debug, info, warn or error`},
	} {
		l, err := New(tt.level)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New(%q) = %v; want %q", tt.level, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("New(%q): %v", tt.level, err)
		}
		ctx := context.Background()
		if !l.Enabled(ctx, tt.enabled) || l.Enabled(ctx, tt.enabled-1) {
			t.Errorf("New(%q) logs from a level other than %v", tt.level, tt.enabled)
		}
		if slog.Default().Handler() != l.Handler() {
			t.Errorf("New(%q) did not make its logger slog's default", tt.level)
		}
	}
}
