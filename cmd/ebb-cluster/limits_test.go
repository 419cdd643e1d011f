package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestMaxBodyBytesFlag: the gateway and the operator take --max-body-bytes
// (64 MiB by default) and refuse a value out of range before they look
// for a cluster.
func TestMaxBodyBytesFlag(t *testing.T) {
	for _, cmd := range []string{"gateway", "operator"} {
		t.Run(cmd, func(t *testing.T) {
			out, err := run(cmd, "--help")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "--max-body-bytes int") || !strings.Contains(out, "(default 67108864)") {
				t.Errorf("ebb-cluster %s --help lacks --max-body-bytes with default 64 MiB:\n%s", cmd, out)
			}
			for _, tt := range []struct {
				value, wantErr string
			}{
				{"0", "--max-body-bytes must be between 1 and"},
				{"-5", "--max-body-bytes must be between 1 and"},
				{"4294967296", "--max-body-bytes must be between 1 and"},
				{"lots", `invalid argument "lots" for "--max-body-bytes"`},
				{"1048576", "no Kubernetes cluster to talk to"}, // valid: it goes on to the cluster
			} {
				_, err := run(cmd, "--max-body-bytes="+tt.value, "--kubeconfig="+t.TempDir()+"/none")
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ebb-cluster %s --max-body-bytes=%s = %v, want %q", cmd, tt.value, err, tt.wantErr)
				}
			}
		})
	}
}

// TestReplicaPodLimitArgs: the operator passes its --max-body-bytes and
// --max-request-elements to every replica pod.
func TestReplicaPodLimitArgs(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{args: nil, want: []string{"--max-body-bytes", "67108864", "--max-request-elements", "67108864"}},
		{args: []string{"--max-body-bytes=1048576", "--max-request-elements=1000"}, want: []string{"--max-body-bytes", "1048576", "--max-request-elements", "1000"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var o replicaPodOptions
			f := pflag.NewFlagSet("operator", pflag.ContinueOnError)
			addReplicaPodFlags(f, &o)
			if err := f.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if got := o.replicaArgs(); !slices.Equal(got, tt.want) {
				t.Errorf("replicaArgs() = %q; want %q", got, tt.want)
			}
		})
	}
}
