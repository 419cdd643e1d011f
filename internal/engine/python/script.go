package python

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// workerParts are the parts of the worker's script, in order: one program
// kept in files of a readable size.
var workerParts = []string{"worker.py", "worker_tensors.py", "worker_pool.py"}

//go:embed worker.py worker_tensors.py worker_pool.py
var workerFiles embed.FS

// workerSource returns the worker's script, its parts joined, made on
// first use: every ebb process links this package, and only those that
// run Python models need the script (100 KB).
var workerSource = sync.OnceValue(joinWorker)

func joinWorker() []byte {
	var b []byte
	for i, name := range workerParts {
		part, err := workerFiles.ReadFile(name)
		if err != nil {
			panic(err) // embedded: cannot happen
		}
		if i > 0 {
			b = append(b, "\n\n"...)
		}
		b = append(b, part...)
	}
	return b
}

// WorkerSource returns the source of the program each worker process runs:
// worker.py, with worker_tensors.py and worker_pool.py after it.
func WorkerSource() []byte { return append([]byte(nil), workerSource()...) }

// DefaultCacheDir is ebb's cache directory: $XDG_CACHE_HOME/ebb, else the
// user cache directory's ebb, else ebb-<uid> in the temp directory.
func DefaultCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "ebb")
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "ebb")
	}
	return filepath.Join(os.TempDir(), "ebb-"+strconv.Itoa(os.Getuid()))
}

// WriteWorker writes the worker's script (WorkerSource) into dir, under a name made from its
// content's hash, and returns its path. An existing file with that name is
// reused, and concurrent callers (replicas starting together) are safe: each
// writes a temporary file and renames it into place.
func WriteWorker(dir string) (string, error) {
	src := workerSource()
	sum := sha256.Sum256(src)
	path := filepath.Join(dir, "python-worker-"+hex.EncodeToString(sum[:8])+".py")
	if b, err := os.ReadFile(path); err == nil && sha256.Sum256(b) == sum {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("engine python: create the cache directory for its worker: %w (set XDG_CACHE_HOME to a writable directory)", err)
	}
	tmp, err := os.CreateTemp(dir, ".python-worker-*.py")
	if err != nil {
		return "", fmt.Errorf("engine python: write its worker: %w (set XDG_CACHE_HOME to a writable directory)", err)
	}
	_, werr := tmp.Write(src)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("engine python: write its worker: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("engine python: write its worker: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("engine python: write its worker: %w", err)
	}
	return path, nil
}
