package trees

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadDoesNotEchoFile is issue 10's /etc/shadow case: the load error
// reaches clients in a 503 ("cannot start a replica: ..."), so it must not
// quote the file's contents, not even the first byte of a syntax error.
func TestLoadDoesNotEchoFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, contents string
	}{
		{"not json", "root:$6$secrethash:19000:0:99999:7:::\n"},
		{"long number where a string is wanted", `{"learner":{"objective":{"name":` + strings.Repeat("7", 5000) + `}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "m.json")
			if err := os.WriteFile(p, []byte(tt.contents), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			msg := err.Error()
			if strings.Contains(msg, "root") || strings.Contains(msg, "secret") || strings.Contains(msg, "7777") || len(msg) > 400 {
				t.Errorf("error echoes the file: %q", msg)
			}
		})
	}
	if _, err := os.Stat("/dev/zero"); err == nil {
		if _, err := Load("/dev/zero"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("Load(/dev/zero) = %v; want a refusal before reading", err)
		}
	}
}
