package api

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ebb-ml/ebb/internal/serving"
)

// DefaultPythonInterpreters are the Pythons a python deployment may run on
// a server whose ModelPaths.Interpreters is nil: the one the workers run
// when spec.python.interpreter is empty.
var DefaultPythonInterpreters = []string{"/usr/bin/python3"}

func invalidInterpreter(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, codeInvalid, "invalid deployment: spec.python.interpreter: " + fmt.Sprintf(format, args...)}
}

// resolveInterpreters makes the allowed interpreters comparable with what
// checkInterpreter resolves: absolute, links followed. One that does not
// exist on this server is kept as given (it can still match by name).
func resolveInterpreters(list []string) []string {
	out := make([]string, 0, 2*len(list))
	for _, i := range list {
		if i == "" {
			continue
		}
		if abs, err := exec.LookPath(i); err == nil {
			i = abs
		}
		out = append(out, filepath.Clean(i))
		if real, err := filepath.EvalSymlinks(i); err == nil {
			out = append(out, real)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// checkInterpreter confines spec.python.interpreter, the program a python
// replica runs, on a server whose replicas run on its own disk (ebb up):
// running a deployment's code already needs the exec scope, and this keeps
// even an exec token to the Pythons the operator allowed. Empty is the
// default interpreter. Otherwise the interpreter, looked up in PATH when
// it is a bare name and with its links followed, must be one of the
// allowed Pythons (ebb up --python-interpreters) or lie under the model
// roots (a virtualenv there, whose bin/python links to an allowed Python
// or is a Python built under a root), and be an executable regular file.
func (p *ModelPaths) checkInterpreter(interp string) error {
	if interp == "" {
		return nil
	}
	shown := quoteClipped(interp)
	allowed := strings.Join(p.Interpreters, ", ")
	hint := "use one of " + allowed + ", a virtualenv under " + strings.Join(p.Roots, ", ") + ", or start ebb up with --python-interpreters"
	path := interp
	if !strings.ContainsRune(interp, filepath.Separator) {
		found, err := exec.LookPath(interp)
		if err != nil {
			return invalidInterpreter("%s is not found in this server's PATH: %s", shown, hint)
		}
		path = found
	}
	if !filepath.IsAbs(path) {
		return invalidInterpreter("%s is a relative path: give an absolute one; %s", shown, hint)
	}
	path = filepath.Clean(path)
	real, err := filepath.EvalSymlinks(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return invalidInterpreter("%s does not exist on the server: %s", shown, hint)
	case err != nil:
		return invalidInterpreter("%s cannot be read: %v", shown, pathErr(err))
	}
	if !slices.Contains(p.resolvedInterpreters, real) && !slices.Contains(p.resolvedInterpreters, path) && !p.under(real) {
		return invalidInterpreter("%s is not a Python this server allows: %s", shown, hint)
	}
	info, err := os.Stat(real)
	switch {
	case err != nil:
		return invalidInterpreter("%s cannot be read: %v", shown, pathErr(err))
	case !info.Mode().IsRegular():
		return invalidInterpreter("%s is not a regular file (it is a %s)", shown, modeName(info.Mode()))
	case info.Mode().Perm()&0o111 == 0:
		return invalidInterpreter("%s is not executable", shown)
	}
	return nil
}

func pythonInterpreter(s serving.Spec) string {
	if s.Python == nil {
		return ""
	}
	return s.Python.Interpreter
}
