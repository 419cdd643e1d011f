package httpproxy

import (
	"strings"
	"testing"
)

func TestNewChecksOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string // "" for no error
	}{
		{name: "command", opts: Options{Command: []string{"server"}}},
		{name: "upstream", opts: Options{Upstream: "http://127.0.0.1:8000/prefix"}},
		{name: "both", opts: Options{Command: []string{"server"}, Upstream: "http://127.0.0.1:8000"}, want: "not both"},
		{name: "neither", opts: Options{}, want: "set spec.command"},
		{name: "not a URL", opts: Options{Upstream: "127.0.0.1:8000"}, want: `upstream "127.0.0.1:8000" is not an http:// or https:// URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("New error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name     string
		lines    int
		bytes    int
		writes   []string
		wantTail string
	}{
		{name: "short", lines: 3, bytes: 100, writes: []string{"a\nb\n"}, wantTail: "a\nb"},
		{name: "last lines", lines: 2, bytes: 100, writes: []string{"a\nb\n", "c\nd", "e\n"}, wantTail: "c\nde"},
		{name: "last bytes", lines: 10, bytes: 4, writes: []string{"0123456789"}, wantTail: "6789"},
		{name: "many writes", lines: 1, bytes: 3, writes: strings.Split(strings.Repeat("x\n", 100)+"end", ""), wantTail: "end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newTailBuffer(tt.lines, tt.bytes)
			for _, w := range tt.writes {
				b.Write([]byte(w))
			}
			if got := b.String(); got != tt.wantTail {
				t.Errorf("String() = %q, want %q", got, tt.wantTail)
			}
			if len(b.buf) > 2*tt.bytes {
				t.Errorf("buffer holds %d bytes, bound is %d", len(b.buf), 2*tt.bytes)
			}
		})
	}
}
