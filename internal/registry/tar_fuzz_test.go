package registry_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/registry"
)

// FuzzExtractTar extracts arbitrary bytes as an uploaded directory archive
// into a fresh directory beside a sentinel file. Whatever the bytes:
// ExtractTar does not panic; nothing appears, and nothing changes, outside
// the target directory; inside it there are only regular files and
// directories; the files hold no more bytes than the archive (a small
// archive cannot fill the disk); and an archive it accepts comes out the
// same through WriteTar and ExtractTar again.
func FuzzExtractTar(f *testing.F) {
	dir := f.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub/deep"), 0o755); err != nil {
		f.Fatal(err)
	}
	for name, content := range map[string]string{"model.json": `{"ok":true}`, "sub/deep/notes.txt": strings.Repeat("x", 600)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := registry.WriteTar(&buf, dir); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(sparseTar(1 << 20))
	f.Fuzz(func(t *testing.T, archive []byte) {
		parent := t.TempDir()
		out := filepath.Join(parent, "out")
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		sentinel := filepath.Join(parent, "sentinel")
		if err := os.WriteFile(sentinel, []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
		err := registry.ExtractTar(bytes.NewReader(archive), out)

		entries, rerr := os.ReadDir(parent)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if len(entries) != 2 {
			t.Fatalf("ExtractTar (err %v) left %d entries beside the target directory, want only out and sentinel", err, len(entries))
		}
		if b, rerr := os.ReadFile(sentinel); rerr != nil || string(b) != "keep" {
			t.Fatalf("ExtractTar (err %v) changed a file outside the target directory: %q, %v", err, b, rerr)
		}
		got, size := snapshot(t, out)
		if size > int64(len(archive)) {
			t.Fatalf("ExtractTar (err %v) wrote %d bytes of files from a %d-byte archive", err, size, len(archive))
		}
		if err != nil {
			return
		}

		var again bytes.Buffer
		if err := registry.WriteTar(&again, out); err != nil {
			t.Fatalf("WriteTar of an extracted archive: %v", err)
		}
		out2 := t.TempDir()
		if err := registry.ExtractTar(&again, out2); err != nil {
			t.Fatalf("ExtractTar of WriteTar's archive: %v", err)
		}
		if got2, _ := snapshot(t, out2); fmt.Sprint(got2) != fmt.Sprint(got) {
			t.Fatalf("extract, pack, extract changed the directory:\n first %q\nsecond %q", got, got2)
		}
	})
}

// snapshot maps every path under dir to the file's executable bit and
// contents ("d" for a directory) and returns the files' total size; it
// fails t on anything but regular files and directories.
func snapshot(t *testing.T, dir string) (map[string]string, int64) {
	t.Helper()
	m := map[string]string{}
	var size int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			m[rel] = "d"
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			m[rel] = fmt.Sprintf("%v %s", info.Mode().Perm()&0o111 != 0, b)
			size += info.Size()
		default:
			t.Fatalf("ExtractTar left %s of mode %v", rel, info.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, size
}

// TestExtractTarRefusesSparse holds ExtractTar to the bytes it receives: a
// GNU sparse file (PAX format 0.1), which archive/tar expands to its
// declared size with zeros, would turn a 3 KB upload into a file of any
// size.
func TestExtractTarRefusesSparse(t *testing.T) {
	dir := t.TempDir()
	err := registry.ExtractTar(bytes.NewReader(sparseTar(64<<20)), dir)
	if err == nil || !strings.Contains(err.Error(), "sparse") {
		t.Errorf("ExtractTar of a sparse file = %v, want a refusal that says sparse", err)
	}
	if got, _ := snapshot(t, dir); len(got) > 1 {
		t.Errorf("ExtractTar of a sparse file left %d entries", len(got)-1)
	}
}

// sparseTar returns an archive holding one GNU sparse file (PAX format
// 0.1) named "big" of realSize bytes, all of them a hole but the first.
// archive/tar reads such files but cannot write them.
func sparseTar(realSize int64) []byte {
	var pax bytes.Buffer
	for _, kv := range [][2]string{
		{"GNU.sparse.major", "0"},
		{"GNU.sparse.minor", "1"},
		{"GNU.sparse.name", "big"},
		{"GNU.sparse.realsize", fmt.Sprint(realSize)},
		{"GNU.sparse.numblocks", "1"},
		{"GNU.sparse.map", "0,1"},
	} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		fmt.Fprintf(&pax, "%d%s", n, rec)
	}
	var b bytes.Buffer
	b.Write(tarHeader("PaxHeaders/big", 'x', int64(pax.Len())))
	b.Write(padded(pax.Bytes()))
	b.Write(tarHeader("GNUSparseFile.0/big", '0', 1))
	b.Write(padded([]byte("x")))
	b.Write(make([]byte, 1024))
	return b.Bytes()
}

// tarHeader is one ustar header block.
func tarHeader(name string, typeflag byte, size int64) []byte {
	h := make([]byte, 512)
	copy(h, name)
	copy(h[100:], "0000644\x00")
	copy(h[108:], "0000000\x00")
	copy(h[116:], "0000000\x00")
	copy(h[124:], fmt.Sprintf("%011o\x00", size))
	copy(h[136:], "00000000000\x00")
	h[156] = typeflag
	copy(h[257:], "ustar\x0000")
	copy(h[148:], "        ")
	var sum int
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

func padded(b []byte) []byte {
	return append(b, make([]byte, (512-len(b)%512)%512)...)
}
