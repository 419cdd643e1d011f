// Package python serves a user's Python model class over OIP v2 through a
// small Python shim that ebb ships (shim.py, standard library only; numpy when
// it can be imported). A python replica is the interpreter running the shim:
// `ebb replica --engine python` writes the shim to a cache directory and
// replaces itself with the interpreter (Exec), so the replica keeps its PID
// and the listening socket and notify pipe its backend gave it.
//
// The class contract (see the shim's docstring for the details): an optional
// load(path), called once with the absolute model path; predict(inputs),
// given a dict of input name to numpy array (nested lists without numpy) and
// returning a dict of output name to array-like, or one array-like served as
// output "predict"; and an optional metadata() describing the tensors.
package python

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// DefaultInterpreter is the Python that runs the shim when none is given:
// the system one, which sees the distribution's packages (Debian's
// python3-sklearn, python3-torch).
const DefaultInterpreter = "/usr/bin/python3"

//go:embed shim.py
var shim []byte

// Shim returns the source of the Python shim.
func Shim() []byte { return append([]byte(nil), shim...) }

// Options say which class the shim serves and where.
type Options struct {
	// Interpreter is the Python to run: a path, or a name looked up in PATH.
	// Default DefaultInterpreter.
	Interpreter string
	// Class is "FILE.py:ClassName" (FILE relative to the model's directory,
	// or absolute) or "module:ClassName".
	Class string
	// Model is the path passed to the class's load method.
	Model string
	// Deployment is the name clients use in /v2/models/{name}; ReplicaID is
	// reported at /ebb/v1/replica.
	Deployment string
	ReplicaID  string
	// ListenFD is an inherited listening socket to serve on, or -1 to bind
	// Addr instead.
	ListenFD int
	Addr     string
	// NotifyFD receives the readiness notice (server.Notice JSON), or -1.
	NotifyFD int
	// DrainTimeout bounds how long in-flight requests may run after SIGTERM.
	DrainTimeout time.Duration
	// CacheDir is where the shim is written; default DefaultCacheDir().
	CacheDir string
}

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

// WriteShim writes the shim into dir, under a name made from its content's
// hash, and returns its path. An existing file with that name is reused, and
// concurrent callers (replicas starting together) are safe: each writes a
// temporary file and renames it into place.
func WriteShim(dir string) (string, error) {
	sum := sha256.Sum256(shim)
	path := filepath.Join(dir, "python-shim-"+hex.EncodeToString(sum[:8])+".py")
	if b, err := os.ReadFile(path); err == nil && sha256.Sum256(b) == sum {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("engine python: create the cache directory for its shim: %w (set XDG_CACHE_HOME to a writable directory)", err)
	}
	tmp, err := os.CreateTemp(dir, ".python-shim-*.py")
	if err != nil {
		return "", fmt.Errorf("engine python: write its shim: %w (set XDG_CACHE_HOME to a writable directory)", err)
	}
	_, werr := tmp.Write(shim)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("engine python: write its shim: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("engine python: write its shim: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("engine python: write its shim: %w", err)
	}
	return path, nil
}

// Argv returns the command line that runs the shim at shimPath for opts,
// starting with the interpreter as given (not resolved).
func Argv(shimPath string, opts Options) []string {
	interp := opts.Interpreter
	if interp == "" {
		interp = DefaultInterpreter
	}
	// -u: unbuffered, so the model's prints reach the replica log at once.
	argv := []string{interp, "-u", shimPath,
		"--deployment", opts.Deployment,
		"--id", opts.ReplicaID,
		"--model", opts.Model,
		"--python-class", opts.Class,
	}
	if opts.ListenFD >= 0 {
		argv = append(argv, "--listen-fd", strconv.Itoa(opts.ListenFD))
	} else {
		argv = append(argv, "--addr", opts.Addr)
	}
	if opts.NotifyFD >= 0 {
		argv = append(argv, "--notify-fd", strconv.Itoa(opts.NotifyFD))
	}
	if opts.DrainTimeout > 0 {
		argv = append(argv, "--drain-timeout", strconv.FormatFloat(opts.DrainTimeout.Seconds(), 'f', -1, 64))
	}
	return argv
}

// Check reports what is wrong with opts before anything runs: no class, or
// no interpreter at the path given. It returns the interpreter's resolved
// path.
func Check(opts Options) (string, error) {
	if opts.Class == "" {
		return "", errors.New(`engine python needs a class: set spec.python.class (--python-class) to "FILE.py:ClassName" or "module:ClassName"`)
	}
	if (opts.ListenFD >= 0) == (opts.Addr != "") {
		return "", errors.New("engine python: give one of a listening descriptor (--listen-fd) and an address (--addr)")
	}
	interp := opts.Interpreter
	if interp == "" {
		interp = DefaultInterpreter
	}
	path, err := exec.LookPath(interp)
	if err != nil {
		return "", fmt.Errorf("engine python: interpreter %s not found: %w (install python3, e.g. apt-get install python3, or set spec.python.interpreter)", interp, err)
	}
	return path, nil
}

// Exec replaces the current process with the interpreter running the shim
// for opts; descriptors without close-on-exec (ListenFD, NotifyFD) are
// inherited. It returns only when that could not happen, saying why.
func Exec(opts Options) error {
	path, err := Check(opts)
	if err != nil {
		return err
	}
	dir := opts.CacheDir
	if dir == "" {
		dir = DefaultCacheDir()
	}
	shimPath, err := WriteShim(dir)
	if err != nil {
		return err
	}
	argv := Argv(shimPath, opts)
	if err := syscall.Exec(path, argv, os.Environ()); err != nil {
		return fmt.Errorf("engine python: run %s: %w", path, err)
	}
	return nil // unreachable: Exec does not return on success
}
