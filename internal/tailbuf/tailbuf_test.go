package tailbuf

import (
	"strings"
	"testing"
)

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
			b := New(tt.lines, tt.bytes)
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
