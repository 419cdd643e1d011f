package jobs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

// The parts log holds the results of finished chunks (each a part, see
// part.go) beside the output: file:///d/out.csv in the directory
// /d/.out.csv.parts/, s3://b/k under s3://b/k.parts/. Each Run of a job
// appends to segments of its own, never to an earlier Run's: on files one
// segment, RUN.log, appended to and synced in groups; on S3, which cannot
// append, one object per group, RUN-SEQ.log, each one PUT. RUN starts
// with the time, so that the segments sort in the order they were made.
//
// A segment is a sequence of frames, each one part:
//
//	magic   "ebF1"
//	idLen   uint16, little-endian: the chunk id's length
//	bodyLen uint64, little-endian: the part's length
//	crc     uint32, little-endian: CRC-32C of idLen, bodyLen, id and body
//	id      the chunk's id
//	body    the part
//
// A frame whose bytes are all there and whose checksum holds is whole; a
// segment is read up to its first frame that is not (a tail torn by a
// crash, never synced, so never checkpointed: see commit.go), and what
// follows is ignored. A chunk may have whole frames in several segments
// (its frame was synced, then a crash came before its checkpoint, and the
// next Run sent it again): they hold its rows each, and the latest is
// used, so that no row is written twice. The part files of earlier
// versions of ebb (one per chunk, ID.jsonl) are not read: a job resumed
// across an upgrade sends their chunks again; they go with the log.

const (
	frameMagic  = "ebF1"
	frameHeader = 4 + 2 + 8 + 4
	segSuffix   = ".log"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameAt says where a chunk's frame lies: segment seg (a file name in
// the parts directory, or an object name under the parts prefix), from
// offset off, n bytes with its header.
type frameAt struct {
	seg string
	off int64
	n   int64
}

// frameHead returns the header and id of chunk id's frame of body.
func frameHead(id string, body []byte) []byte {
	h := make([]byte, frameHeader, frameHeader+len(id))
	copy(h, frameMagic)
	binary.LittleEndian.PutUint16(h[4:], uint16(len(id)))
	binary.LittleEndian.PutUint64(h[6:], uint64(len(body)))
	h = append(h, id...)
	crc := crc32.Update(0, castagnoli, h[4:14])
	crc = crc32.Update(crc, castagnoli, h[frameHeader:])
	crc = crc32.Update(crc, castagnoli, body)
	binary.LittleEndian.PutUint32(h[14:], crc)
	return h
}

// encodeFrame returns the whole frame of chunk id's part body.
func encodeFrame(id string, body []byte) []byte {
	return append(frameHead(id, body), body...)
}

// frameLengths checks the header h of a frame in a segment with left
// bytes from it on, and returns the lengths of its id and body.
func frameLengths(h []byte, left int64) (idLen, bodyLen int64, ok bool) {
	idLen, n := int64(binary.LittleEndian.Uint16(h[4:])), binary.LittleEndian.Uint64(h[6:])
	if string(h[:4]) != frameMagic || idLen == 0 || n > uint64(left) || frameHeader+idLen+int64(n) > left {
		return 0, 0, false
	}
	return idLen, int64(n), true
}

// skipFrame reads the frame at the start of r, which has at most left
// bytes, through buf, checking it whole. It returns the chunk id and the
// frame's length; io.EOF when r is at its end; errTorn when the frame is
// not whole.
func skipFrame(r io.Reader, left int64, buf []byte) (id string, n int64, err error) {
	var h [frameHeader]byte
	k, err := io.ReadFull(r, h[:])
	switch {
	case k == 0 && err == io.EOF:
		return "", 0, io.EOF
	case err == io.ErrUnexpectedEOF:
		return "", 0, errTorn
	case err != nil:
		return "", 0, err
	}
	idLen, bodyLen, ok := frameLengths(h[:], left)
	if !ok {
		return "", 0, errTorn
	}
	idb := make([]byte, idLen)
	if _, err := io.ReadFull(r, idb); err != nil {
		return "", 0, tornOr(err)
	}
	crc := crc32.Update(0, castagnoli, h[4:14])
	crc = crc32.Update(crc, castagnoli, idb)
	for rest := bodyLen; rest > 0; {
		k, err := io.ReadFull(r, buf[:min(rest, int64(len(buf)))])
		if err != nil {
			return "", 0, tornOr(err)
		}
		crc = crc32.Update(crc, castagnoli, buf[:k])
		rest -= int64(k)
	}
	if crc != binary.LittleEndian.Uint32(h[14:]) {
		return "", 0, errTorn
	}
	return string(idb), frameHeader + idLen + bodyLen, nil
}

// parseFrame returns the chunk id and body of the frame that is all of
// b, checked whole; errTorn when it is not.
func parseFrame(b []byte) (id string, body []byte, err error) {
	if len(b) < frameHeader {
		return "", nil, errTorn
	}
	idLen, bodyLen, ok := frameLengths(b, int64(len(b)))
	if !ok || frameHeader+idLen+bodyLen != int64(len(b)) {
		return "", nil, errTorn
	}
	crc := crc32.Update(0, castagnoli, b[4:14])
	crc = crc32.Update(crc, castagnoli, b[frameHeader:])
	if crc != binary.LittleEndian.Uint32(b[14:]) {
		return "", nil, errTorn
	}
	return string(b[frameHeader : frameHeader+idLen]), b[frameHeader+idLen:], nil
}

// errTorn is a frame that is not whole.
var errTorn = errors.New("torn frame")

func tornOr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errTorn
	}
	return err
}

// scanSegment indexes the whole frames of segment seg, size bytes read
// from r, into idx, replacing those of earlier segments.
func scanSegment(r io.Reader, seg string, size int64, idx map[string]frameAt) error {
	br, buf := bufio.NewReaderSize(r, 1<<20), make([]byte, 1<<16)
	var off int64
	for {
		id, n, err := skipFrame(br, size-off, buf)
		if err == io.EOF || err == errTorn {
			return nil // the rest is a torn tail
		}
		if err != nil {
			return err
		}
		idx[id] = frameAt{seg: seg, off: off, n: n}
		off += n
	}
}

// newRunName names a Run's segments: the time, then random bytes.
func newRunName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%016x-%s", time.Now().UnixNano(), hex.EncodeToString(b[:]))
}

func partsDir(out loc) string {
	return filepath.Join(filepath.Dir(out.path), "."+filepath.Base(out.path)+".parts")
}

func partsPrefix(out loc) string { return out.key + ".parts/" }

// scanParts returns the whole frames in the parts log of out, by chunk
// id, the latest segment's when a chunk has several.
func (st *Storage) scanParts(ctx context.Context, out loc) (map[string]frameAt, error) {
	idx := map[string]frameAt{}
	if !out.isS3() {
		entries, err := os.ReadDir(partsDir(out))
		if errors.Is(err, os.ErrNotExist) {
			return idx, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parts of %s: %w", out.uri, err)
		}
		for _, e := range entries { // by name: in the order they were made
			if !strings.HasSuffix(e.Name(), segSuffix) || !e.Type().IsRegular() {
				continue
			}
			if err := scanFile(filepath.Join(partsDir(out), e.Name()), e.Name(), idx); err != nil {
				return nil, fmt.Errorf("parts of %s: %w", out.uri, err)
			}
		}
		return idx, nil
	}
	c, err := st.s3Client()
	if err != nil {
		return nil, err
	}
	objs, err := st.listS3Parts(ctx, out)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if !strings.HasSuffix(o.Key, segSuffix) {
			continue
		}
		r, err := c.GetObject(ctx, out.bucket, o.Key, minio.GetObjectOptions{})
		if err != nil {
			return nil, s3Error("parts of output", out, err)
		}
		err = scanSegment(r, strings.TrimPrefix(o.Key, partsPrefix(out)), o.Size, idx)
		r.Close()
		if err != nil {
			return nil, s3Error("parts of output", out, err)
		}
	}
	return idx, nil
}

func scanFile(path, seg string, idx map[string]frameAt) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return scanSegment(f, seg, fi.Size(), idx)
}

// listS3Parts lists every object under the parts prefix of out, by key.
func (st *Storage) listS3Parts(ctx context.Context, out loc) ([]minio.ObjectInfo, error) {
	c, err := st.s3Client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var objs []minio.ObjectInfo
	for o := range c.ListObjects(ctx, out.bucket, minio.ListObjectsOptions{Prefix: partsPrefix(out), Recursive: true}) {
		if o.Err != nil {
			return nil, s3Error("parts of output", out, o.Err)
		}
		objs = append(objs, o)
	}
	slices.SortFunc(objs, func(a, b minio.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	return objs, nil
}

// removeParts deletes the parts log of out, and anything else under it
// (the part files of earlier versions).
func (st *Storage) removeParts(ctx context.Context, out loc) error {
	if !out.isS3() {
		return os.RemoveAll(partsDir(out))
	}
	objs, err := st.listS3Parts(ctx, out)
	if err != nil {
		return err
	}
	c, err := st.s3Client()
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := c.RemoveObject(ctx, out.bucket, o.Key, minio.RemoveObjectOptions{}); err != nil {
			return s3Error("part of output", out, err)
		}
	}
	return nil
}

// groupBytes bounds the parts of one group: an S3 group is held in
// memory until its PUT.
const groupBytes = 32 << 20

// partsWriter appends a Run's frames to its own segment: a file, created
// on the first append, or, on S3, an object per group.
type partsWriter struct {
	st  *Storage
	out loc
	run string

	f      *os.File // the segment file, once created
	size   int64    // of the segment file
	synced bool     // the directory entries are synced
	broken error    // a failed write: the segment is not appended to again

	buf bytes.Buffer // S3: the group not yet PUT
	seq int          // S3: the group's number
}

func (st *Storage) partsWriter(out loc) *partsWriter {
	return &partsWriter{st: st, out: out, run: newRunName()}
}

// segment is the name of the segment the next frame goes to.
func (w *partsWriter) segment() string {
	if w.out.isS3() {
		return fmt.Sprintf("%s-%06d%s", w.run, w.seq, segSuffix)
	}
	return w.run + segSuffix
}

// append adds chunk id's part to the segment, to be made durable by the
// next sync, and says where its frame lies.
func (w *partsWriter) append(id string, body []byte) (frameAt, error) {
	if w.broken != nil {
		return frameAt{}, w.broken
	}
	head := frameHead(id, body)
	at := frameAt{seg: w.segment(), n: int64(len(head) + len(body))}
	if w.out.isS3() {
		at.off = int64(w.buf.Len())
		w.buf.Write(head)
		w.buf.Write(body)
		return at, nil
	}
	if w.f == nil {
		if err := w.create(); err != nil {
			return frameAt{}, err
		}
	}
	at.off = w.size
	_, err := w.f.Write(head)
	if err == nil {
		_, err = w.f.Write(body)
	}
	if err != nil {
		// A frame partly written is a torn one: the segment is read up
		// to it, and this Run writes no more.
		w.broken = fmt.Errorf("parts of %s: %w", w.out.uri, err)
		return frameAt{}, w.broken
	}
	w.size += at.n
	return at, nil
}

func (w *partsWriter) create() error {
	dir := partsDir(w.out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("parts of %s: %w", w.out.uri, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, w.segment()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("parts of %s: %w", w.out.uri, err)
	}
	w.f = f
	return nil
}

// sync makes every frame appended so far durable.
func (w *partsWriter) sync(ctx context.Context) error {
	if w.broken != nil {
		return w.broken
	}
	if w.out.isS3() {
		if w.buf.Len() == 0 {
			return nil
		}
		c, err := w.st.s3Client()
		if err != nil {
			return err
		}
		key := partsPrefix(w.out) + w.segment()
		if _, err := c.PutObject(ctx, w.out.bucket, key, bytes.NewReader(w.buf.Bytes()), int64(w.buf.Len()),
			minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
			return s3Error("parts of output", w.out, err)
		}
		w.buf.Reset()
		w.seq++
		return nil
	}
	if w.f == nil {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		w.broken = fmt.Errorf("parts of %s: %w", w.out.uri, err)
		return w.broken
	}
	if !w.synced {
		// The segment's entry in the directory, and the directory's in
		// its parent, so that a checkpointed frame survives a crash. At
		// best: where a system cannot sync a directory, a crash may lose
		// the segment, and its chunks, checkpointed or not, are sent
		// again (a checkpoint counts only with its frame).
		dir := partsDir(w.out)
		_ = syncDir(dir)
		_ = syncDir(filepath.Dir(dir))
		w.synced = true
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (w *partsWriter) close() {
	if w.f != nil {
		w.f.Close()
		w.f, w.broken = nil, errClosed
	}
}

var errClosed = errors.New("the parts log is closed")

// partsReader reads frames back for the output: from the segment files,
// kept open, or from S3 objects, the last few kept in memory (a group's
// chunks are mostly read one after another).
type partsReader struct {
	st    *Storage
	out   loc
	files map[string]*os.File
	objs  []cachedObject
}

type cachedObject struct {
	seg  string
	data []byte
}

const cachedObjects = 4

func (st *Storage) partsReader(out loc) *partsReader {
	return &partsReader{st: st, out: out, files: map[string]*os.File{}}
}

// part returns the body of chunk id's frame at at, checked whole.
func (p *partsReader) part(ctx context.Context, id string, at frameAt) ([]byte, error) {
	var frame []byte
	if !p.out.isS3() {
		f := p.files[at.seg]
		if f == nil {
			var err error
			if f, err = os.Open(filepath.Join(partsDir(p.out), at.seg)); err != nil {
				return nil, err
			}
			p.files[at.seg] = f
		}
		frame = make([]byte, at.n)
		if _, err := f.ReadAt(frame, at.off); err != nil {
			return nil, fmt.Errorf("part of chunk %s in %s: %w", id, at.seg, err)
		}
	} else {
		data, err := p.object(ctx, at.seg)
		if err != nil {
			return nil, err
		}
		if at.off+at.n > int64(len(data)) {
			return nil, fmt.Errorf("part of chunk %s in %s: %w", id, at.seg, errTorn)
		}
		frame = data[at.off : at.off+at.n]
	}
	got, body, err := parseFrame(frame)
	if err == nil && got != id {
		err = fmt.Errorf("the frame at %d is chunk %s's", at.off, got)
	}
	if err != nil {
		return nil, fmt.Errorf("part of chunk %s in %s: %w", id, at.seg, err)
	}
	return body, nil
}

func (p *partsReader) object(ctx context.Context, seg string) ([]byte, error) {
	for _, o := range p.objs {
		if o.seg == seg {
			return o.data, nil
		}
	}
	c, err := p.st.s3Client()
	if err != nil {
		return nil, err
	}
	r, err := c.GetObject(ctx, p.out.bucket, partsPrefix(p.out)+seg, minio.GetObjectOptions{})
	if err != nil {
		return nil, s3Error("part of output", p.out, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, s3Error("part of output", p.out, err)
	}
	if len(p.objs) == cachedObjects {
		p.objs = p.objs[1:]
	}
	p.objs = append(p.objs, cachedObject{seg: seg, data: data})
	return data, nil
}

func (p *partsReader) close() {
	for _, f := range p.files {
		f.Close()
	}
}
