package api

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
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
	h.paths = &p
}

// checkModelPath checks spec.model against the confinement, if any.
func (h *Handler) checkModelPath(spec serving.Spec) error {
	p := h.paths
	model := strings.TrimSpace(spec.Model)
	if p == nil || model == "" {
		return nil
	}
	if _, isRef := serving.ParseModelRef(model); isRef {
		return nil
	}
	if rest, ok := strings.CutPrefix(model, "file://"); ok {
		model = rest
	} else if strings.Contains(model, "://") {
		return nil // s3:// and other URIs are fetched, not read from here
	}
	return p.check(model)
}

func invalidModel(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, codeInvalid, "invalid deployment: spec.model: " + fmt.Sprintf(format, args...)}
}

func (p *ModelPaths) check(model string) error {
	shown := model
	if len(shown) > 256 {
		shown = shown[:256] + "..."
	}
	abs, err := filepath.Abs(model)
	if err != nil {
		return invalidModel("%q is not a usable path: %v", shown, err)
	}
	roots := strings.Join(p.Roots, ", ")
	if !p.under(abs) {
		return invalidModel("%q is outside the directories models may be read from (%s): move the model under one of them, start ebb up with --model-roots, or push it to the registry (ebb models push)", shown, roots)
	}
	real, err := filepath.EvalSymlinks(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return invalidModel("%q does not exist on the server: give the path of a model file or directory under %s, or push the model to the registry (ebb models push)", shown, roots)
	case err != nil:
		return invalidModel("%q cannot be read: %v", shown, pathErr(err))
	case !p.under(real):
		return invalidModel("%q links to a file outside the directories models may be read from (%s)", shown, roots)
	}
	info, err := os.Stat(real)
	if err != nil {
		return invalidModel("%q cannot be read: %v", shown, pathErr(err))
	}
	var size int64
	switch {
	case info.Mode().IsRegular():
		size = info.Size()
		// Replicas run as this user: a file it cannot open (say,
		// /etc/shadow under a root of "/") would only fail later.
		f, err := os.Open(real)
		if err != nil {
			return invalidModel("%q cannot be read by ebb: %v", shown, pathErr(err))
		}
		f.Close()
	case info.IsDir():
		if size, err = dirSize(real, p.MaxBytes); err != nil {
			return invalidModel("%q: %v", shown, err)
		}
	default:
		return invalidModel("%q is not a regular file or a directory (it is a %s): give the path of a model file", shown, modeName(info.Mode()))
	}
	if size > p.MaxBytes {
		return invalidModel("%q holds more than %d bytes, the most a model may have (ebb up --max-model-bytes)", shown, p.MaxBytes)
	}
	return nil
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
