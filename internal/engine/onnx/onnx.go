// Package onnx is the engine for ONNX models: it runs any .onnx file through
// ONNX Runtime (github.com/yalue/onnxruntime_go, cgo) and serves its graph
// inputs and outputs as OIP v2 tensors.
//
// ONNX Runtime is a shared library loaded at run time, once per process, from
// the path FindLibrary returns: Options.Library (ebb replica
// --onnxruntime-lib), else $EBB_ONNXRUNTIME_LIB, else the first of
// DefaultLibraryPaths that exists, where hack/install-onnxruntime.sh puts
// it. The library must be ONNX Runtime LibraryVersion (C API 24) or a later
// release. Its string operators need the en_US.UTF-8 locale, which the same
// script installs.
//
// A Model reports the names, datatypes and shapes the model file declares,
// symbolic or unknown dimensions as -1, so the batch dimension of a model
// exported with a dynamic axis can vary per call; a scalar has shape [],
// and a tensor the file declares without any shape (which ONNX Runtime
// cannot tell from a scalar; graph.go reads it from the file) takes any
// shape. Tensors of every OIP v2 datatype are served: bool, int8 to int64,
// uint8 to uint64, float16, bfloat16, float, double and string (BYTES). A
// model with an input or output of another kind (complex, float8,
// sequences, maps, ...) is refused when it is loaded, with the name of the
// offending tensor. Models without inputs, and rank-0 inputs and outputs,
// work. A request asking for some outputs runs only the nodes they need:
// ONNX Runtime runs every node of a session's graph whatever a run fetches,
// so those requests run on sessions of pruned copies of the model, a few
// per model, created on first use within a bounded memory budget
// (subsets.go); a set of outputs beyond those runs the whole graph.
//
// The engine calls ONNX Runtime through the C functions of
// github.com/yalue/onnxruntime_go (capi.go), which loads the library; its
// Go API cannot run a graph without inputs, read a scalar output, or read a
// float16 output of a size not known before the run.
//
// Built without cgo, the package compiles but Load reports that the engine
// is unavailable; Available tells ahead whether Load can work.
package onnx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Platform is the OIP v2 platform a Model reports (Triton's name for it).
const Platform = "onnxruntime_onnx"

// LibraryVersion is the ONNX Runtime release hack/install-onnxruntime.sh
// installs and the C API headers onnxruntime_go was built against.
const LibraryVersion = "1.24.1"

// EnvLibrary names the environment variable that gives the path of
// libonnxruntime.so when Options.Library is empty.
const EnvLibrary = "EBB_ONNXRUNTIME_LIB"

// InstallHint says how to get the shared library; errors about a missing or
// unusable library end with it.
const InstallHint = "install ONNX Runtime " + LibraryVersion + " with hack/install-onnxruntime.sh " +
	"(from the ebb repository; run it as root to install under /usr/local/lib/ebb), " +
	"or point --onnxruntime-lib or $" + EnvLibrary + " at a libonnxruntime.so.1 of version " + LibraryVersion

// libraryDir is the directory under /usr/local/lib (root) or the user cache
// directory (others) where the install script puts the library.
const libraryDir = "ebb/onnxruntime-" + LibraryVersion

// libraryFile is the shared library's file name in libraryDir.
const libraryFile = "libonnxruntime.so.1"

// Options configures Load.
type Options struct {
	// Library is the path of libonnxruntime.so; empty means FindLibrary's
	// search. The first successful Load of a process loads the library;
	// later ones must name the same file or leave Library empty.
	Library string
	// IntraOpThreads bounds the threads ONNX Runtime uses inside one
	// operator. 0 means one per CPU this process may use: GOMAXPROCS,
	// which follows the CPU affinity mask (taskset) and cgroup CPU limits.
	// ONNX Runtime's own default counts the machine's cores instead: under
	// `taskset -c 1` on a 2-core machine it starts 2 threads, and the extra
	// one spins on the one CPU, taking it from the process's other work.
	IntraOpThreads int
	// InterOpThreads bounds the threads that run independent operators in
	// parallel; 0 leaves ONNX Runtime's default.
	InterOpThreads int
}

// intraOpThreads returns the intra-op thread count Load gives ONNX Runtime
// for the requested count n: n when it is positive, else procs (the
// process's GOMAXPROCS), at least 1.
func intraOpThreads(n, procs int) int {
	if n > 0 {
		return n
	}
	return max(1, procs)
}

// errNoCgo explains why a build without cgo cannot load ONNX models.
var errNoCgo = errors.New("this ebb was built without cgo (CGO_ENABLED=0), and the onnx engine needs it: rebuild with CGO_ENABLED=1 and a C compiler (apt-get install -y gcc)")

// Available returns nil when Load can work in this process: the build has
// cgo and FindLibrary(explicit) finds the library. Otherwise the error says
// what is missing and how to fix it.
func Available(explicit string) error {
	if !cgoEnabled {
		return errNoCgo
	}
	_, err := FindLibrary(explicit)
	return err
}

// DefaultLibraryPaths returns where hack/install-onnxruntime.sh installs the
// library, in the order FindLibrary tries them: the system-wide path (the
// script run as root), then the user's cache directory.
func DefaultLibraryPaths() []string {
	paths := []string{filepath.Join("/usr/local/lib", libraryDir, libraryFile)}
	if dir, err := os.UserCacheDir(); err == nil {
		paths = append(paths, filepath.Join(dir, libraryDir, libraryFile))
	}
	return paths
}

// FindLibrary returns the path of the ONNX Runtime shared library: explicit
// when it is not empty, else $EBB_ONNXRUNTIME_LIB when set, else the first of
// DefaultLibraryPaths that exists. The path returned names an existing
// regular file; otherwise the error says where it looked and how to install
// the library.
func FindLibrary(explicit string) (string, error) {
	check := func(path, source string) (string, error) {
		info, err := os.Stat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("ONNX Runtime library %s (from %s) does not exist: %s", path, source, InstallHint)
		case err != nil:
			return "", fmt.Errorf("ONNX Runtime library %s (from %s): %v: %s", path, source, err, InstallHint)
		case !info.Mode().IsRegular():
			return "", fmt.Errorf("ONNX Runtime library %s (from %s) is not a regular file: %s", path, source, InstallHint)
		}
		return path, nil
	}
	if explicit != "" {
		return check(explicit, "--onnxruntime-lib")
	}
	if env := os.Getenv(EnvLibrary); env != "" {
		return check(env, "$"+EnvLibrary)
	}
	paths := DefaultLibraryPaths()
	for _, p := range paths {
		if info, err := os.Stat(p); err == nil && info.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("ONNX Runtime library not found: --onnxruntime-lib and $%s are not set and none of %s exists: %s",
		EnvLibrary, strings.Join(paths, ", "), InstallHint)
}
