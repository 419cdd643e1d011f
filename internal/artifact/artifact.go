// Package artifact stores model artifacts by content and fetches them
// verified.
//
// An artifact is a byte stream named by its SHA-256: every backend keeps it
// under the key "sha256/<first two hex digits>/<64 hex digits>" below its
// root, so identical content is stored once and a URI names immutable bytes.
// A directory artifact (an MLflow model, a Python model directory) is stored
// as a deterministic tar of the directory (see PutDir) and unpacked on fetch
// (see Cache.FetchDir).
//
// Backends are sibling packages that implement Store: artifact/file
// (file:///abs/root/sha256/...) and artifact/s3 (s3://bucket/prefix/sha256/...);
// artifact/backend picks one from a location URI. Every read through this
// package is checked against the expected SHA-256: bytes that do not match
// are refused with a *ChecksumError and never served. Cache keeps verified
// copies on the local disk of a replica host, shared by every replica there.
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"
)

// Ref names one stored artifact.
type Ref struct {
	// URI is where the artifact lives, e.g.
	// "s3://models/ebb/sha256/ab/ab12...". It ends with the artifact's key.
	URI string `json:"uri"`
	// SHA256 is the lower-case hex SHA-256 of the stored bytes.
	SHA256 string `json:"sha256"`
	// Size is the number of stored bytes.
	Size int64 `json:"size"`
}

// Store is a content-addressed artifact store. Implementations are safe for
// concurrent use.
type Store interface {
	// Put stores everything r yields, hashing it while it is written, and
	// returns its Ref. Putting identical content again returns the same Ref
	// and leaves the stored copy as it was. Put never buffers the whole
	// artifact in memory.
	Put(ctx context.Context, r io.Reader) (Ref, error)
	// Open returns the stored bytes of uri, streamed. It does not verify
	// them: use OpenVerified, or a Cache, to read bytes that will be served.
	// A missing artifact gives an error that matches ErrNotFound.
	Open(ctx context.Context, uri string) (io.ReadCloser, error)
	// Stat returns the Ref of a stored artifact, its SHA256 taken from the
	// URI's key. A missing artifact gives an error that matches ErrNotFound.
	Stat(ctx context.Context, uri string) (Ref, error)
	// Delete removes the artifact. Deleting a missing artifact is not an
	// error.
	Delete(ctx context.Context, uri string) error
}

// ErrNotFound matches (errors.Is) the error for an artifact that is not
// stored.
var ErrNotFound = errors.New("artifact not found")

// ChecksumError reports bytes whose SHA-256 differs from the expected one.
type ChecksumError struct {
	URI  string
	Want string
	Got  string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("artifact %s checksum mismatch: want sha256 %s, got %s; the stored copy is corrupt or was replaced", e.URI, e.Want, e.Got)
}

// Key returns the store-relative key of the artifact with the given SHA-256
// ("sha256/ab/ab12..."). It panics if sum is not 64 lower-case hex digits;
// check user input with ValidSHA256 first.
func Key(sum string) string {
	if !ValidSHA256(sum) {
		panic(fmt.Sprintf("artifact.Key: %q is not a hex sha256", sum))
	}
	return "sha256/" + sum[:2] + "/" + sum
}

// ValidSHA256 reports whether s is 64 lower-case hex digits.
func ValidSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// SHA256FromURI returns the SHA-256 that a content-addressed URI names: the
// last element of a URI that ends in "sha256/xx/<64 hex digits>". It reports
// false for any other URI.
func SHA256FromURI(uri string) (string, bool) {
	// Drop any query or fragment; keys never contain them.
	if i := strings.IndexAny(uri, "?#"); i >= 0 {
		uri = uri[:i]
	}
	sum := path.Base(uri)
	dir := path.Dir(uri)
	if !ValidSHA256(sum) || path.Base(dir) != sum[:2] || path.Base(path.Dir(dir)) != "sha256" {
		return "", false
	}
	return sum, true
}

// ExpectedSHA256 returns the SHA-256 to verify uri against: want when given
// (it must agree with the URI's key when the URI has one), else the one in
// the URI's key.
func ExpectedSHA256(uri, want string) (string, error) {
	want = strings.ToLower(want)
	fromURI, ok := SHA256FromURI(uri)
	switch {
	case want == "" && !ok:
		return "", fmt.Errorf("artifact %s: no sha256 given and the URI does not end in sha256/xx/<sha256>; pass the artifact's sha256", uri)
	case want == "":
		return fromURI, nil
	case !ValidSHA256(want):
		return "", fmt.Errorf("artifact %s: sha256 %q is not 64 lower-case hex digits", uri, want)
	case ok && fromURI != want:
		return "", fmt.Errorf("artifact %s: expected sha256 %s but the URI names %s; the reference is inconsistent", uri, want, fromURI)
	}
	return want, nil
}

// OpenVerified opens uri in s and checks the bytes it yields against want
// (or, when want is "", the SHA-256 in the URI). Read returns a
// *ChecksumError in place of io.EOF when the bytes do not match, so a
// reader that consumes to EOF never mistakes corrupt bytes for good ones;
// a caller that acts on the bytes before EOF must not commit them until
// then.
func OpenVerified(ctx context.Context, s Store, uri, want string) (io.ReadCloser, error) {
	want, err := ExpectedSHA256(uri, want)
	if err != nil {
		return nil, err
	}
	rc, err := s.Open(ctx, uri)
	if err != nil {
		return nil, err
	}
	return &verifyingReader{rc: rc, h: sha256.New(), uri: uri, want: want}, nil
}

type verifyingReader struct {
	rc   io.ReadCloser
	h    hash.Hash
	uri  string
	want string
	n    int64
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			return n, &ChecksumError{URI: v.uri, Want: v.want, Got: got}
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.rc.Close() }

// HashingReader passes reads through and hashes what it passes.
type HashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

// NewHashingReader returns a reader that hashes what it reads from r.
func NewHashingReader(r io.Reader) *HashingReader {
	return &HashingReader{r: r, h: sha256.New()}
}

func (h *HashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// SHA256 returns the hex SHA-256 of the bytes read so far.
func (h *HashingReader) SHA256() string { return hex.EncodeToString(h.h.Sum(nil)) }

// Size returns the number of bytes read so far.
func (h *HashingReader) Size() int64 { return h.n }
