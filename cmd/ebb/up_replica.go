package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/replica/process"
)

// replicaBinaryEnv gives --replica-binary's default.
const replicaBinaryEnv = "EBB_REPLICA_BINARY"

func addReplicaBinaryFlag(f *pflag.FlagSet, binary *string) {
	f.StringVar(binary, "replica-binary", os.Getenv(replicaBinaryEnv), "the replica binary (cmd/ebb-replica) replicas run; default $"+replicaBinaryEnv+", else the ebb-replica beside this ebb, else ebb replica (the subcommand), which keeps all of ebb resident in every replica")
}

// replicaCommand returns the command ebb up starts replicas with: binary
// when given, else the ebb-replica beside this executable, else this
// executable's `ebb replica`, which it says once in log.
func replicaCommand(binary string, log *slog.Logger) ([]string, error) {
	if binary != "" {
		path, err := filepath.Abs(binary)
		if err != nil {
			return nil, fmt.Errorf("--replica-binary %s: %w", binary, err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("--replica-binary: %w; build it with %s", err, process.BuildLeanHint)
		}
		if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("--replica-binary %s is not an executable file: give the path of ebb-replica (cmd/ebb-replica)", path)
		}
		return []string{path}, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find ebb's own executable, which runs replicas: %w", err)
	}
	cmd, lean := process.ReplicaCommand(exe)
	if !lean {
		log.Info("replicas run `ebb replica`: there is no "+process.LeanBinary+" beside this ebb; the lean replica binary keeps a fraction of ebb's memory resident per replica",
			"ebb", exe, "build", process.BuildLeanHint)
	}
	return cmd, nil
}

func addONNXRuntimeFlag(f *pflag.FlagSet, lib *string) {
	f.StringVar(lib, "onnxruntime-lib", "", "engine onnx: path of the libonnxruntime.so.1 (ONNX Runtime "+onnx.LibraryVersion+") replicas load; default $"+onnx.EnvLibrary+", then where hack/install-onnxruntime.sh installs it")
}

// onnxRuntimeEnv returns what ebb up adds to its replicas' environment for
// --onnxruntime-lib lib: $EBB_ONNXRUNTIME_LIB set to its absolute path,
// which every replica binary reads (an onnx replica of the lean
// ebb-replica hands itself to ebb, environment and all); nothing when lib
// is empty: replicas then inherit ebb's own $EBB_ONNXRUNTIME_LIB, if any.
// A path that names no file is refused now, not at the first onnx
// replica's start.
func onnxRuntimeEnv(lib string) ([]string, error) {
	if lib == "" {
		return nil, nil
	}
	path, err := filepath.Abs(lib)
	if err != nil {
		return nil, fmt.Errorf("--onnxruntime-lib %s: %w", lib, err)
	}
	if _, err := onnx.FindLibrary(path); err != nil {
		return nil, err
	}
	return []string{onnx.EnvLibrary + "=" + path}, nil
}
