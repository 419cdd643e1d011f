package registry

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ebb-ml/ebb/internal/artifact"
)

// WriteTar writes the directory dir to w as an uncompressed tar archive
// that depends only on the files' names, contents and executable bits
// (entries sorted, times and owners zeroed), so the same directory always
// yields the same bytes and therefore the same artifact digest. The bytes
// are those artifact.WriteTar writes (a test holds them equal), so a
// directory pushed through the registry and one stored by artifact.PutDir
// are one artifact. Symbolic links and other special files are refused.
func WriteTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		name := filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, ModTime: time.Unix(0, 0).UTC()}
		switch {
		case info.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
			return tw.WriteHeader(hdr)
		case info.Mode().IsRegular():
			hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, info.Size(), 0o644
			if info.Mode()&0o111 != 0 {
				hdr.Mode = 0o755
			}
		default:
			return fmt.Errorf("%s is not a regular file or directory (links are not packed): copy the file it points to instead", p)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, info.Size()); err != nil {
			return fmt.Errorf("pack %s: %w", p, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pack directory %s: %w", dir, err)
	}
	return tw.Close()
}

// ExtractTar extracts a tar archive (as WriteTar writes) into dir, which
// must exist: artifact.ExtractTar, the one extraction the registry and the
// artifact cache share. Entries that would land outside dir, links,
// special files and sparse files are refused, so the files written hold no
// more bytes than the archive.
func ExtractTar(r io.Reader, dir string) error { return artifact.ExtractTar(r, dir) }
