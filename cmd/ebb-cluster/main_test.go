package main

import (
	"bytes"
	"strings"
	"testing"
)

// run executes ebb-cluster's root command with args, in process.
func run(args ...string) (string, error) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestCommands checks each command's help (its usage and the flags it
// shares with ebb up) and that a bad flag value or a missing cluster
// stops it before it starts, with an error that says what to do.
func TestCommands(t *testing.T) {
	shared := []string{"--kubeconfig", "--namespace", "--addr", "--log-level", "--tls-cert", "--oidc-issuer", "--read-timeout", "--max-conns", "--auth"}
	for _, tt := range []struct {
		cmd   string
		flags []string // besides shared
	}{
		{cmd: "operator", flags: []string{"--leader-elect", "--store-dsn", "--artifacts", "--retire-after", "--replica-image", "--admin-token-secret"}},
		{cmd: "gateway", flags: []string{"--grpc-addr", "--operator-url", "--token-file", "--replica-tls-cert", "--endpoints-from"}},
	} {
		t.Run(tt.cmd, func(t *testing.T) {
			out, err := run(tt.cmd, "--help")
			if err != nil {
				t.Fatalf("ebb-cluster %s --help: %v", tt.cmd, err)
			}
			for _, want := range append([]string{"ebb-cluster " + tt.cmd + " [flags]"}, append(shared, tt.flags...)...) {
				if !strings.Contains(out, want) {
					t.Errorf("ebb-cluster %s --help lacks %q:\n%s", tt.cmd, want, out)
				}
			}
			for _, bad := range []struct {
				args    []string
				wantErr string
			}{
				{[]string{"--log-level=loud"}, `invalid --log-level "loud": use debug, info, warn or error`},
				{[]string{"--kubeconfig=" + t.TempDir() + "/none"}, "no Kubernetes cluster to talk to"},
				{[]string{"--no-such-flag"}, "unknown flag: --no-such-flag"},
			} {
				if _, err := run(append([]string{tt.cmd}, bad.args...)...); err == nil || !strings.Contains(err.Error(), bad.wantErr) {
					t.Errorf("ebb-cluster %s %s = %v, want %q", tt.cmd, strings.Join(bad.args, " "), err, bad.wantErr)
				}
			}
		})
	}
}
