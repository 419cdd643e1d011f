package artifact

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// PutDir stores the directory dir in s as one artifact: a deterministic tar
// (names sorted, times, owners and modes other than the executable bit
// dropped), so the same tree always has the same SHA-256. The tar streams
// into Put; nothing is buffered whole. Only regular files and directories
// are allowed.
func PutDir(ctx context.Context, s Store, dir string) (Ref, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return Ref{}, fmt.Errorf("directory artifact: %w", err)
	}
	if !fi.IsDir() {
		return Ref{}, fmt.Errorf("directory artifact %s is not a directory", dir)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(WriteTar(pw, dir)) }()
	ref, err := s.Put(ctx, pr)
	pr.CloseWithError(errors.New("put finished")) // stops the writer if Put failed early
	return ref, err
}

// tarTime is the modification time of every entry: the epoch, which USTAR
// can encode.
var tarTime = time.Unix(0, 0).UTC()

// WriteTar writes the deterministic tar of dir that PutDir stores.
func WriteTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: tarTime})
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			mode := int64(0o644)
			if fi.Mode()&0o111 != 0 {
				mode = 0o755
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: fi.Size(), ModTime: tarTime}); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			n, err := io.Copy(tw, f)
			if err == nil && n != fi.Size() {
				err = fmt.Errorf("%s changed size while being stored", p)
			}
			return err
		default:
			return fmt.Errorf("directory artifact %s contains %s, which is not a regular file or directory (%s); replace links with copies", dir, rel, d.Type())
		}
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// ExtractTar unpacks a tar written by WriteTar into dst, which must exist.
// It refuses entries that would land outside dst and entries other than
// regular files and directories.
func ExtractTar(r io.Reader, dst string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("directory artifact: reading tar: %w", err)
		}
		name := filepath.FromSlash(h.Name)
		if !filepath.IsLocal(name) || strings.Contains(h.Name, `\`) {
			return fmt.Errorf("directory artifact: tar entry %q points outside the directory", h.Name)
		}
		if isSparse(h) {
			// archive/tar expands the holes with zeros: a few bytes
			// could declare a file of any size.
			return fmt.Errorf("directory artifact: tar entry %q is a sparse file: pack the directory with ebb models push, which writes plain files", h.Name)
		}
		p := filepath.Join(dst, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return fmt.Errorf("directory artifact: %w", err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("directory artifact: writing %s: %w", h.Name, err)
			}
		default:
			return fmt.Errorf("directory artifact: tar entry %q has type %q; only regular files and directories are allowed", h.Name, h.Typeflag)
		}
	}
}

// isSparse reports whether h is a GNU sparse file in PAX form, which
// archive/tar reads as a regular file of its expanded size. (The old GNU
// form keeps type tar.TypeGNUSparse, which ExtractTar refuses anyway.)
func isSparse(h *tar.Header) bool {
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}
