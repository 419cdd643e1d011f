package python_test

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ebb-ml/ebb/internal/engine/python"
)

func TestWriteWorkerConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	paths := make([]string, 8)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range paths {
		wg.Go(func() { paths[i], errs[i] = python.WriteWorker(dir) })
	}
	wg.Wait()
	for i := range paths {
		if errs[i] != nil {
			t.Fatalf("WriteWorker: %v", errs[i])
		}
		if paths[i] != paths[0] {
			t.Errorf("WriteWorker returned %s and %s", paths[0], paths[i])
		}
	}
	b, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, python.WorkerSource()) {
		t.Error("the written worker differs from the embedded one")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("cache dir holds %d files, want only the worker (no temporary files left)", len(entries))
	}
	// A corrupted copy is replaced.
	if err := os.WriteFile(paths[0], []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := python.WriteWorker(dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(paths[0]); !bytes.Equal(b, python.WorkerSource()) {
		t.Error("WriteWorker kept a corrupted worker")
	}
}
