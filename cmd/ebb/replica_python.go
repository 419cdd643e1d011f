package main

import (
	"github.com/ebb-ml/ebb/internal/engine/python"
)

// execPython replaces this process with the Python shim serving f's class on
// the same inherited descriptors (--listen-fd, --notify-fd) or --addr. It
// returns only when that could not happen; the caller reports the error.
func execPython(f replicaFlags) error {
	return python.Exec(python.Options{
		Interpreter:  f.pythonInterpreter,
		Class:        f.pythonClass,
		Model:        f.model,
		Deployment:   f.deployment,
		ReplicaID:    f.id,
		ListenFD:     f.listenFD,
		Addr:         f.addr,
		NotifyFD:     f.notifyFD,
		DrainTimeout: f.drainTimeout,
	})
}
