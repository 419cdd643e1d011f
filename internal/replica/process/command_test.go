package process_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/replica/process"
)

// ReplicaCommand runs the ebb-replica beside ebb only when it is an
// executable file, and ebb's own `replica` subcommand otherwise.
func TestReplicaCommand(t *testing.T) {
	for _, tt := range []struct {
		name     string
		beside   func(t *testing.T, path string) // makes (or not) dir/ebb-replica
		wantLean bool
	}{
		{name: "none beside ebb"},
		{name: "an executable beside ebb", wantLean: true, beside: func(t *testing.T, p string) { write(t, p, 0o755) }},
		{name: "a file that is not executable", beside: func(t *testing.T, p string) { write(t, p, 0o644) }},
		{name: "a directory of that name", beside: func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			exe := filepath.Join(dir, "ebb")
			write(t, exe, 0o755)
			lean := filepath.Join(dir, process.LeanBinary)
			if tt.beside != nil {
				tt.beside(t, lean)
			}
			want := []string{exe, "replica"}
			if tt.wantLean {
				want = []string{lean}
			}
			got, gotLean := process.ReplicaCommand(exe)
			if diff := cmp.Diff(want, got); diff != "" || gotLean != tt.wantLean {
				t.Errorf("ReplicaCommand(%s) = %q, lean %v; want lean %v (-want +got):\n%s", exe, got, gotLean, tt.wantLean, diff)
			}
		})
	}
}

func write(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
}
