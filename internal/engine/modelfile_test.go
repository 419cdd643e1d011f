package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadModelFile covers the hostile model paths of issue 10: /dev/zero
// was read without limit; nothing is read past the size bound, and errors
// never quote the file.
func TestReadModelFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small.json")
	if err := os.WriteFile(small, []byte(`{"secret":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		max     int64
		want    string // contents, when no error
		wantErr string
	}{
		{name: "regular file", path: small, max: 100, want: `{"secret":1}`},
		{name: "at the limit", path: small, max: 12, want: `{"secret":1}`},
		{name: "over the limit", path: small, max: 11, wantErr: "the file has 12 bytes, more than the limit of 11"},
		{name: "device", path: "/dev/zero", max: 1 << 20, wantErr: "is not a regular file"},
		{name: "directory", path: dir, max: 1 << 20, wantErr: "is a directory"},
		{name: "missing", path: filepath.Join(dir, "nope"), max: 1, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := os.Stat(tt.path); tt.path == "/dev/zero" && err != nil {
				t.Skip("no /dev/zero here")
			}
			got, err := ReadModelFile(tt.path, tt.max)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReadModelFile = %q, %v; want error %q", got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("error %q quotes the file", err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("ReadModelFile = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
