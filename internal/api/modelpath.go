package api

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ebb-ml/ebb/internal/serving"
)

// DefaultMaxModelBytes bounds a model given by path when
// ModelPaths.MaxBytes is zero.
const DefaultMaxModelBytes = 20 << 30

// maxModelDirEntries bounds the files counted in a model directory.
const maxModelDirEntries = 100000

// ModelPaths confines the models that deployments name by path (not a
// registry version, not an s3:// URI) on a server whose replicas read them
// from its own disk (ebb up): at create, put and patch such a path must
// exist, be a regular file or a directory, lie under one of Roots (after
// symbolic links are resolved) and hold at most MaxBytes. Anything else is
// a 400 that names the path and the roots, never the file's contents, so
// that /etc/shadow and /dev/zero are refused before a replica reads them.
type ModelPaths struct {
	// Roots are the directories models may be under; they should be
	// absolute. Empty: every path is refused.
	Roots []string
	// MaxBytes bounds a model file, or the files of a model directory;
	// default DefaultMaxModelBytes.
	MaxBytes int64
	// Interpreters are the Pythons spec.python.interpreter may name
	// besides those under Roots; nil: DefaultPythonInterpreters.
	Interpreters []string

	resolvedInterpreters []string
}

// ConfineModelPaths makes the handler check models given by path against
// p (see ModelPaths). Without it, paths are not checked here (the
// cluster, where replica pods read their own volumes).
func (h *Handler) ConfineModelPaths(p ModelPaths) {
	if p.MaxBytes <= 0 {
		p.MaxBytes = DefaultMaxModelBytes
	}
	roots := make([]string, 0, len(p.Roots))
	for _, r := range p.Roots {
		abs, err := filepath.Abs(r)
		if err != nil {
			continue
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			abs = real
		}
		roots = append(roots, abs)
	}
	p.Roots = roots
	if p.Interpreters == nil {
		p.Interpreters = DefaultPythonInterpreters
	}
	p.resolvedInterpreters = resolveInterpreters(p.Interpreters)
	h.paths = &p
}

// checkModelPath checks spec.model, and the class file of a python spec,
// against the confinement, if any.
func (h *Handler) checkModelPath(spec serving.Spec) error {
	p := h.paths
	if p == nil {
		return nil
	}
	model, local := localModel(spec.Model)
	if local {
		if err := p.check(model); err != nil {
			return err
		}
	}
	if spec.Python != nil {
		if err := p.checkInterpreter(spec.Python.Interpreter); err != nil {
			return err
		}
		return p.checkClass(spec.Python.Class, model, local)
	}
	return nil
}

// modelsChanged reports whether next reads other models or class files
// than cur: its model, engine, traffic split, shadow, python class or
// interpreter. A patch checks them again (checkModel) only then: what it
// leaves alone was checked when it was written.
func modelsChanged(cur, next serving.Spec) bool {
	return cur.Model != next.Model || cur.Engine != next.Engine ||
		!slices.Equal(trafficModels(cur), trafficModels(next)) || shadowModel(cur) != shadowModel(next) ||
		pythonClass(cur) != pythonClass(next) || pythonInterpreter(cur) != pythonInterpreter(next)
}

func pythonClass(s serving.Spec) string {
	if s.Python == nil {
		return ""
	}
	return s.Python.Class
}

// localModel returns the path of a model given by path (file:// URIs
// included); local is false for a registry version, another URI (s3://,
// fetched by the replicas) and an empty model.
func localModel(model string) (path string, local bool) {
	model = strings.TrimSpace(model)
	if model == "" {
		return "", false
	}
	if _, isRef := serving.ParseModelRef(model); isRef {
		return "", false
	}
	if rest, ok := strings.CutPrefix(model, "file://"); ok {
		return rest, true
	}
	if strings.Contains(model, "://") {
		return "", false // s3:// and other URIs are fetched, not read from here
	}
	return model, true
}

func invalidModel(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, codeInvalid, "invalid deployment: spec.model: " + fmt.Sprintf(format, args...)}
}

func (p *ModelPaths) check(model string) error {
	shown := quoteClipped(model)
	abs, err := filepath.Abs(model)
	if err != nil {
		return invalidModel("%s is not a usable path: %v", shown, err)
	}
	roots := strings.Join(p.Roots, ", ")
	if !p.under(abs) {
		return invalidModel("%s is outside the directories models may be read from (%s): move the model under one of them, start ebb up with --model-roots, or push it to the registry (ebb models push)", shown, roots)
	}
	real, err := filepath.EvalSymlinks(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return invalidModel("%s does not exist on the server: give the path of a model file or directory under %s, or push the model to the registry (ebb models push)", shown, roots)
	case err != nil:
		return invalidModel("%s cannot be read: %v", shown, pathErr(err))
	case !p.under(real):
		return invalidModel("%s links to a file outside the directories models may be read from (%s)", shown, roots)
	}
	info, err := os.Stat(real)
	if err != nil {
		return invalidModel("%s cannot be read: %v", shown, pathErr(err))
	}
	var size int64
	switch {
	case info.Mode().IsRegular():
		size = info.Size()
		// Replicas run as this user: a file it cannot open (say,
		// /etc/shadow under a root of "/") would only fail later.
		f, err := os.Open(real)
		if err != nil {
			return invalidModel("%s cannot be read by ebb: %v", shown, pathErr(err))
		}
		f.Close()
	case info.IsDir():
		if size, err = dirSize(real, p.MaxBytes); err != nil {
			return invalidModel("%s: %v", shown, err)
		}
	default:
		return invalidModel("%s is not a regular file or a directory (it is a %s): give the path of a model file", shown, modeName(info.Mode()))
	}
	if size > p.MaxBytes {
		return invalidModel("%s holds more than %d bytes, the most a model may have (ebb up --max-model-bytes)", shown, p.MaxBytes)
	}
	return nil
}

func invalidClass(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, codeInvalid, "invalid deployment: spec.python.class: " + fmt.Sprintf(format, args...)}
}

// classHint says how to name a class file that passes checkClass.
const classHint = `name the file relative to the model's directory, without "..", as in "model.py:Model"`

// checkClass confines the file of a python class ("FILE.py:ClassName"),
// which the worker imports, as a model path is confined: a relative FILE
// is relative to the model's directory (the model itself when it is a
// directory) and may not leave it; an absolute one must be under the
// roots. Where the model is on this server's disk (model, when local),
// the file must also exist there, be a regular file and resolve, links
// and all, under the roots. "module:ClassName" names no file: the worker
// imports it from the model's directory or the interpreter's own
// packages.
//
// The worker (internal/engine/python/worker.py) takes the target, the
// part before the last ":", for a file when it ends in .py or holds a /.
func (p *ModelPaths) checkClass(class, model string, local bool) error {
	target, _, ok := cutLast(class, ":")
	if !ok || !(strings.HasSuffix(target, ".py") || strings.Contains(target, "/")) {
		return nil
	}
	shown := quoteClipped(class)
	roots := strings.Join(p.Roots, ", ")
	var file string
	switch {
	case filepath.IsAbs(target):
		file = filepath.Clean(target)
		if !p.under(file) {
			return invalidClass("%s: the file is outside the directories models and their code may be read from (%s): %s", shown, roots, classHint)
		}
	case !filepath.IsLocal(target):
		return invalidClass("%s leaves the model's directory: %s (an absolute path must be under %s)", shown, classHint, roots)
	case !local:
		return nil // inside a registry artifact, which holds no links
	default:
		dir, err := filepath.Abs(model)
		if err != nil {
			return invalidClass("%s: %v", shown, err)
		}
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			dir = filepath.Dir(dir)
		}
		file = filepath.Join(dir, target)
	}
	real, err := filepath.EvalSymlinks(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return invalidClass("%s: the file does not exist on the server: put it in the model's directory and %s", shown, classHint)
	case err != nil:
		return invalidClass("%s: the file cannot be read: %v", shown, pathErr(err))
	case !p.under(real):
		return invalidClass("%s: the file links to a file outside the directories models and their code may be read from (%s)", shown, roots)
	}
	info, err := os.Stat(real)
	switch {
	case err != nil:
		return invalidClass("%s: the file cannot be read: %v", shown, pathErr(err))
	case !info.Mode().IsRegular():
		return invalidClass("%s: the file is not a regular file (it is a %s)", shown, modeName(info.Mode()))
	case info.Size() > p.MaxBytes:
		return invalidClass("%s: the file holds more than %d bytes (ebb up --max-model-bytes)", shown, p.MaxBytes)
	}
	return nil
}

// cutLast is strings.Cut at the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// under reports whether path is one of the roots or inside one.
func (p *ModelPaths) under(path string) bool {
	for _, r := range p.Roots {
		if path == r || strings.HasPrefix(path, strings.TrimSuffix(r, string(filepath.Separator))+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// dirSize adds up the sizes of the regular files under dir, stopping once
// they pass max or the directory holds too many entries.
func dirSize(dir string, max int64) (int64, error) {
	var size int64
	entries := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if entries++; entries > maxModelDirEntries {
			return fmt.Errorf("the directory holds more than %d entries", maxModelDirEntries)
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			if size += info.Size(); size > max {
				return fs.SkipAll
			}
		}
		return nil
	})
	if err != nil {
		return size, fmt.Errorf("cannot read the directory: %v", pathErr(err))
	}
	return size, nil
}

// pathErr keeps the reason of a *fs.PathError, not its path (already named).
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func modeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return m.Type().String()
}
