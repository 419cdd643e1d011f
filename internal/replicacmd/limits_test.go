package replicacmd

import (
	"strings"
	"testing"
	"time"
)

// TestMaxBodyBytesFlag: --max-body-bytes defaults to 64 MiB and a value
// out of range stops the replica before it starts.
func TestMaxBodyBytesFlag(t *testing.T) {
	tests := []struct {
		args    []string
		want    string
		wantErr bool
	}{
		{args: nil, want: "67108864"},
		{args: []string{"--max-body-bytes=1048576"}, want: "1048576"},
		{args: []string{"--max-body-bytes=0"}, want: "0", wantErr: true},
		{args: []string{"--max-body-bytes=-1"}, want: "-1", wantErr: true},
		{args: []string{"--max-body-bytes=2147483648"}, want: "2147483648", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cmd := New("replica", nil)
			if err := cmd.Flags().Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if got := cmd.Flags().Lookup("max-body-bytes").Value.String(); got != tt.want {
				t.Errorf("--max-body-bytes = %s; want %s", got, tt.want)
			}
			n, _ := cmd.Flags().GetInt64("max-body-bytes")
			f := replicaFlags{deployment: "d", engine: "echo", addr: "127.0.0.1:0", listenFD: -1, drainTimeout: time.Second, maxBodyBytes: n}
			err := f.validate()
			if tt.wantErr != (err != nil) || (err != nil && !strings.Contains(err.Error(), "--max-body-bytes")) {
				t.Errorf("validate() = %v; want an error naming --max-body-bytes: %v", err, tt.wantErr)
			}
		})
	}
}
