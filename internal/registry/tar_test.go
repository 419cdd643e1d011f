package registry_test

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/registry"
)

// TestWriteTarMatchesArtifact holds registry.WriteTar to the bytes
// artifact.WriteTar writes, so a directory has one digest whoever packs it.
func TestWriteTarMatchesArtifact(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "model.json", `{"ok":true}`)
	writeFile(t, dir, "sub/deep/notes.txt", strings.Repeat("x", 3000))
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var ours, theirs bytes.Buffer
	if err := registry.WriteTar(&ours, dir); err != nil {
		t.Fatalf("registry.WriteTar: %v", err)
	}
	if err := artifact.WriteTar(&theirs, dir); err != nil {
		t.Fatalf("artifact.WriteTar: %v", err)
	}
	if !bytes.Equal(ours.Bytes(), theirs.Bytes()) {
		t.Errorf("registry.WriteTar and artifact.WriteTar differ (%d and %d bytes)", ours.Len(), theirs.Len())
	}
	out := t.TempDir()
	if err := artifact.ExtractTar(bytes.NewReader(ours.Bytes()), out); err != nil {
		t.Fatalf("artifact.ExtractTar of registry.WriteTar's archive: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "sub/deep/notes.txt")); err != nil || len(b) != 3000 {
		t.Errorf("extracted notes.txt: %d bytes, %v", len(b), err)
	}
}

func TestExtractTarRefusesEscapes(t *testing.T) {
	for _, name := range []string{"../evil", "/etc/evil", "a/../../evil"} {
		var buf bytes.Buffer
		writeTarEntry(t, &buf, name)
		if err := registry.ExtractTar(&buf, t.TempDir()); err == nil || !strings.Contains(err.Error(), "outside the directory") {
			t.Errorf("ExtractTar(%q) = %v, want a refusal", name, err)
		}
	}
}

func writeTarEntry(t *testing.T, w *bytes.Buffer, name string) {
	t.Helper()
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: 1, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("x"))
	tw.Close()
}
