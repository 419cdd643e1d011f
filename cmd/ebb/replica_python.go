package main

import "errors"

// execPython replaces this process with the Python shim serving f's class.
// Placeholder until engine python lands.
func execPython(f replicaFlags) error {
	return errors.New("engine python is not available in this build yet")
}
