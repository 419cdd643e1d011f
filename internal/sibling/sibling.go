// Package sibling finds the ebb binaries installed together (ebb,
// ebb-replica, ebb-cluster): one binary runs another from its own
// directory, so that a build's binaries keep to each other, and from PATH
// only when there is none beside it.
package sibling

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// IsExecutable reports whether path is a regular file with an execute bit.
func IsExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Beside returns the path of the executable named name in the directory
// of exe, and whether there is one.
func Beside(exe, name string) (string, bool) {
	p := filepath.Join(filepath.Dir(exe), name)
	return p, IsExecutable(p)
}

// Find returns the absolute path of the executable named name beside the
// running executable, else on PATH. The error says where it looked.
func Find(name string) (string, error) {
	if exe, err := os.Executable(); err == nil {
		if p, ok := Beside(exe, name); ok {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("no %s beside this executable or on PATH", name)
	}
	return filepath.Abs(p)
}
