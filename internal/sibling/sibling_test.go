package sibling

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBeside(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	exe := write("ebb", 0o755)
	write("ebb-cluster", 0o755)
	write("not-executable", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "a-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		want bool
	}{
		{"ebb-cluster", true},
		{"not-executable", false},
		{"a-dir", false},
		{"missing", false},
	} {
		p, ok := Beside(exe, tt.name)
		if ok != tt.want || p != filepath.Join(dir, tt.name) {
			t.Errorf("Beside(%s, %s) = %s, %v; want %s, %v", exe, tt.name, p, ok, filepath.Join(dir, tt.name), tt.want)
		}
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	onPath := filepath.Join(dir, "ebb-sibling-test-tool")
	if err := os.WriteFile(onPath, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	if got, err := Find("ebb-sibling-test-tool"); err != nil || got != onPath {
		t.Errorf("Find on PATH = %q, %v; want %q", got, err, onPath)
	}
	_, err := Find("ebb-sibling-test-none")
	if err == nil || !strings.Contains(err.Error(), "no ebb-sibling-test-none beside this executable or on PATH") {
		t.Errorf("Find of a missing binary = %v; want an error that says where it looked", err)
	}
}
