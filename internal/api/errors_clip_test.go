package api

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestClipMessage: quoted values longer than maxQuoted are clipped and
// say how long they were; the rest of a message stays, up to maxMessage.
func TestClipMessage(t *testing.T) {
	x, y := strings.Repeat("x", 256), strings.Repeat("y", 256)
	tests := []struct {
		name, in string
		want     string // the whole answer, when set
		prefix   string // else its start
		maxLen   int
	}{
		{name: "short", in: `spec.model: "x" is wrong`, want: `spec.model: "x" is wrong`},
		{name: "long quoted", in: `a: "` + x + `zzzz" is wrong`, want: `a: "` + x + `"... (260 bytes) is wrong`},
		{name: "two quoted", in: `"` + x + `zz" and "` + y + `zz"`, want: `"` + x + `"... (258 bytes) and "` + y + `"... (258 bytes)`},
		{name: "escapes kept whole", in: `"` + strings.Repeat(`\"`, 300) + `"`, want: `"` + strings.Repeat(`\"`, 256) + `"... (300 bytes)`},
		{name: "utf-8 not split", in: `"` + strings.Repeat("é", 400) + `"`, prefix: `"éé`, maxLen: 300},
		{name: "unterminated quote", in: `say "` + strings.Repeat("z", 5000), prefix: `say "zzz`, maxLen: maxMessage + 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := clipMessage(tt.in)
			if tt.want != "" && got != tt.want || !strings.HasPrefix(got, tt.prefix) {
				t.Errorf("clipMessage = %.400q; want %.400q", got, tt.want+tt.prefix)
			}
			if tt.maxLen > 0 && len(got) > tt.maxLen {
				t.Errorf("clipMessage kept %d bytes; want at most %d", len(got), tt.maxLen)
			}
			if !utf8.ValidString(got) {
				t.Errorf("clipMessage split a UTF-8 sequence: %q", got)
			}
		})
	}
}
