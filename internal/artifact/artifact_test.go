package artifact_test

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/artifact"
)

var (
	sumA = strings.Repeat("ab", 32)
	sumB = strings.Repeat("cd", 32)
)

func TestExpectedSHA256(t *testing.T) {
	tests := []struct {
		name, uri, want, got, err string
	}{
		{name: "from URI", uri: "s3://b/p/sha256/ab/" + sumA, got: sumA},
		{name: "file URI", uri: "file:///var/lib/ebb/sha256/ab/" + sumA, got: sumA},
		{name: "given and agreeing", uri: "s3://b/sha256/ab/" + sumA, want: sumA, got: sumA},
		{name: "given upper case", uri: "s3://b/sha256/ab/" + sumA, want: strings.ToUpper(sumA), got: sumA},
		{name: "given for a plain URI", uri: "s3://b/models/model.onnx", want: sumB, got: sumB},
		{name: "disagreeing", uri: "s3://b/sha256/ab/" + sumA, want: sumB, err: "inconsistent"},
		{name: "none", uri: "s3://b/models/model.onnx", err: "no sha256 given"},
		{name: "bad shard", uri: "s3://b/sha256/cd/" + sumA, err: "no sha256 given"},
		{name: "bad given", uri: "s3://b/x", want: "abc", err: "not 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := artifact.ExpectedSHA256(tt.uri, tt.want)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.got {
				t.Fatalf("= %q, %v; want %q", got, err, tt.got)
			}
		})
	}
}

func TestKey(t *testing.T) {
	if got, want := artifact.Key(sumA), "sha256/ab/"+sumA; got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
}

func TestExtractTarRefusesEscapesAndLinks(t *testing.T) {
	tests := []struct {
		name string
		hdr  tar.Header
		err  string
	}{
		{"parent", tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644}, "outside"},
		{"absolute", tar.Header{Name: "/etc/evil", Typeflag: tar.TypeReg, Mode: 0o644}, "outside"},
		{"symlink", tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}, "only regular files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			if err := tw.WriteHeader(&tt.hdr); err != nil {
				t.Fatal(err)
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "dst")
			if err := os.Mkdir(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			err := artifact.ExtractTar(&buf, dst)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ExtractTar error = %v, want one containing %q", err, tt.err)
			}
		})
	}
}

func TestPutDirRefusesSymlinks(t *testing.T) {
	src := t.TempDir()
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	s := newFileStore(t)
	_, err := artifact.PutDir(t.Context(), s, src)
	if err == nil || !strings.Contains(err.Error(), "not a regular file or directory") {
		t.Errorf("PutDir with a symlink: error %v, want a refusal naming the link", err)
	}
	if _, err := artifact.PutDir(t.Context(), s, filepath.Join(src, "missing")); err == nil {
		t.Error("PutDir of a missing directory succeeded")
	}
}
