package kubetest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// readVolume returns the files a process sees in dir (through the
// symlinks), by path, and the hidden entries.
func readVolume(t *testing.T, dir string) (map[string]string, []string) {
	t.Helper()
	files := map[string]string{}
	var hidden []string
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			hidden = append(hidden, e.Name())
			continue
		}
		root := filepath.Join(dir, e.Name())
		err := filepath.WalkDir(root+"/", func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			files[rel] = string(b)
			return nil
		})
		if err != nil {
			// A file: WalkDir of "name/" fails on a non-directory.
			b, rerr := os.ReadFile(root)
			if rerr != nil {
				t.Fatal(rerr)
			}
			files[e.Name()] = string(b)
		}
	}
	return files, hidden
}

func TestWriteFilesSwapsAtOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	steps := []map[string]string{
		{"tls.crt": "cert 1", "tls.key": "key 1", "ca.crt": "ca"},
		{"tls.crt": "cert 2", "tls.key": "key 2", "sub/extra": "x"}, // ca.crt gone, a nested path added
		{"tls.crt": "cert 2", "tls.key": "key 2", "sub/extra": "x"}, // unchanged
		{},
	}
	for i, files := range steps {
		if i > 0 {
			if got, want := sameFiles(dir, files), cmp.Equal(files, steps[i-1]); got != want {
				t.Errorf("step %d: sameFiles = %v before the write, want %v", i, got, want)
			}
		}
		if err := writeFiles(dir, files, nil); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got, hidden := readVolume(t, dir)
		if diff := cmp.Diff(files, got); diff != "" {
			t.Errorf("step %d: files (-want +got):\n%s", i, diff)
		}
		if !sameFiles(dir, files) {
			t.Errorf("step %d: sameFiles is false right after the write", i)
		}
		// One data directory and the link to it: older sets are removed.
		if len(hidden) != 2 || !slices.Contains(hidden, dataLink) {
			t.Errorf("step %d: hidden entries %q, want %s and one data directory", i, hidden, dataLink)
		}
		if len(files) > 0 {
			fi, err := os.Lstat(filepath.Join(dir, "tls.crt"))
			if err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("step %d: tls.crt is not a symlink through %s: %v %v", i, dataLink, fi, err)
			}
		}
	}
	if err := writeFiles(dir, map[string]string{"../escape": "x"}, nil); err == nil {
		t.Error("a path leaving the volume was written")
	}
}
