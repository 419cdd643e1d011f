package python

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"unsafe"

	"github.com/ebb-ml/ebb/internal/oip"
)

// This file is the Go half of the worker channel's framing; worker.py's
// docstring specifies it and holds the other half. A frame is a u32 body
// length and the body: u8 kind, three zero bytes, u64 request id, then the
// payload. Tensors travel as their little-endian element bytes, 8-byte
// aligned in the body, so the worker wraps them in numpy arrays without a
// copy.

// Message kinds; worker.py has the same numbers.
const (
	kindInfer   = 1 // ebb → worker: u32 count, tensors
	kindResult  = 2 // worker → ebb: u32 count, tensors
	kindError   = 3 // worker → ebb: u16 status, u16 zero, u32 length, message
	kindReady   = 4 // worker → ebb, once: u32 length, metadata JSON
	kindLoadErr = 5 // worker → ebb, instead of ready: u32 length, message

	// A pool's worker (--pool) hosts many models, each by a number.
	kindLoad    = 6 // ebb → worker: u32 model, u32 length, JSON (name, class, path)
	kindLoaded  = 7 // worker → ebb: u32 length, JSON; answers LOAD and UNLOAD
	kindUnload  = 8 // ebb → worker: u32 model, u32 zero
	kindInferTo = 9 // ebb → worker: u32 model, u32 zero, then INFER's payload
)

const (
	// bodyHeader is the kind, padding and request id that open a body.
	bodyHeader = 12
	// tensorHeader is a tensor's fixed fields, before its dimensions.
	tensorHeader = 16
	// maxRank bounds a tensor's dimensions in a frame.
	maxRank = 64
	// MaxFrameBytes bounds one frame a worker sends: an answer larger than
	// this fails its request.
	MaxFrameBytes = 1 << 30
)

var le = binary.LittleEndian

// littleEndian reports whether this machine stores integers little-endian,
// as the channel does: tensor data is copied between the two as bytes.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// dtype is how one OIP v2 datatype's Go slice (see oip.Tensor) travels on
// the channel.
type dtype struct {
	// size is the bytes of one element; 0 for BYTES (length-prefixed).
	size int
	// raw returns data, a slice of the datatype's Go type, as bytes that
	// share its memory; ok is false for another type.
	raw func(data any) (b []byte, ok bool)
	// fromRaw returns the n elements in b as a new slice.
	fromRaw func(b []byte, n int) any
}

// dtypes are the datatypes Python models exchange with the server, one entry
// each; the worker is told their names and sends anything else as the
// nearest wider one listed.
var dtypes = map[string]dtype{
	oip.BOOL:   boolType(),
	oip.INT8:   fixed[int8](),
	oip.INT16:  fixed[int16](),
	oip.INT32:  fixed[int32](),
	oip.INT64:  fixed[int64](),
	oip.UINT8:  fixed[uint8](),
	oip.UINT16: fixed[uint16](),
	oip.UINT32: fixed[uint32](),
	oip.UINT64: fixed[uint64](),
	oip.FP16:   fixed[oip.Float16](),
	oip.BF16:   fixed[oip.BFloat16](),
	oip.FP32:   fixed[float32](),
	oip.FP64:   fixed[float64](),
	oip.BYTES:  {},
}

// datatypeNames lists dtypes' keys, sorted.
func datatypeNames() []string {
	names := make([]string, 0, len(dtypes))
	for n := range dtypes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// fixed is the dtype of a fixed-size element type T whose memory is its
// little-endian bytes (on a little-endian machine).
func fixed[T any]() dtype {
	size := int(unsafe.Sizeof(*new(T)))
	return dtype{
		size: size,
		raw: func(data any) ([]byte, bool) {
			d, ok := data.([]T)
			if !ok {
				return nil, false
			}
			return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(d))), len(d)*size), true
		},
		fromRaw: func(b []byte, n int) any {
			out := make([]T, n)
			copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(out))), n*size), b)
			return out
		},
	}
}

// boolType is fixed[bool] with every nonzero byte read as true: a Go bool
// must hold 0 or 1.
func boolType() dtype {
	t := fixed[bool]()
	t.fromRaw = func(b []byte, n int) any {
		out := make([]bool, n)
		for i := range out {
			out[i] = b[i] != 0
		}
		return out
	}
	return t
}

func pad8(n int) int { return -n & 7 }

// inferFrame returns the INFER frame for request id with inputs, as buffers
// for one vectored write: headers are built, numeric data is referenced in
// place.
func inferFrame(id uint64, inputs []oip.Tensor) ([][]byte, int, error) {
	return tensorFrame(kindInfer, id, nil, inputs)
}

// inferToFrame is inferFrame for model number model of a pool's worker.
func inferToFrame(id uint64, model uint32, inputs []oip.Tensor) ([][]byte, int, error) {
	return tensorFrame(kindInferTo, id, le.AppendUint32(le.AppendUint32(nil, model), 0), inputs)
}

// controlFrame returns the frame of kind for request id with model number
// model and text (LOAD's JSON; none for UNLOAD).
func controlFrame(kind byte, id uint64, model uint32, text []byte) []byte {
	b := make([]byte, 4+bodyHeader, 4+bodyHeader+8+len(text))
	b[4] = kind
	le.PutUint64(b[8:], id)
	b = le.AppendUint32(b, model)
	b = le.AppendUint32(b, uint32(len(text)))
	b = append(b, text...)
	le.PutUint32(b, uint32(len(b)-4))
	return b
}

// tensorFrame returns a frame of kind for request id whose payload is pre
// (a multiple of 8 bytes) then inputs, as inferFrame does.
func tensorFrame(kind byte, id uint64, pre []byte, inputs []oip.Tensor) ([][]byte, int, error) {
	head := make([]byte, 4+bodyHeader, 256)
	head[4] = kind
	le.PutUint64(head[8:], id)
	head = append(head, pre...)
	head = le.AppendUint32(head, uint32(len(inputs)))
	bufs := [][]byte{}
	cur := head
	total := len(head)
	zeros := make([]byte, 8)
	for _, t := range inputs {
		dt, ok := dtypes[t.Datatype]
		if !ok {
			return nil, 0, fmt.Errorf("input %q: datatype %s cannot be passed to a Python model: it takes %v", t.Name, t.Datatype, datatypeNames())
		}
		var data []byte
		if t.Datatype == oip.BYTES {
			strs, ok := t.Data.([]string)
			if !ok {
				return nil, 0, fmt.Errorf("input %q: data of type %T does not match datatype BYTES", t.Name, t.Data)
			}
			data = appendStrings(nil, strs)
		} else if data, ok = dt.raw(t.Data); !ok {
			return nil, 0, fmt.Errorf("input %q: data of type %T does not match datatype %s", t.Name, t.Data, t.Datatype)
		}
		if len(t.Name) > 0xffff || len(t.Shape) > maxRank {
			return nil, 0, fmt.Errorf("input %q: name or rank too large for a Python model", t.Name)
		}
		start := len(cur)
		cur = append(cur, make([]byte, tensorHeader+8*len(t.Shape))...)
		h := cur[start:]
		le.PutUint16(h[0:], uint16(len(t.Name)))
		h[2] = byte(len(t.Datatype))
		h[3] = byte(len(t.Shape))
		le.PutUint64(h[8:], uint64(len(data)))
		for i, d := range t.Shape {
			le.PutUint64(h[tensorHeader+8*i:], uint64(d))
		}
		cur = append(cur, t.Name...)
		cur = append(cur, t.Datatype...)
		cur = append(cur, zeros[:pad8(len(t.Name)+len(t.Datatype))]...)
		total += len(cur) - start
		if len(data) <= 512 {
			// Small data rides in the header buffer: fewer, larger
			// writes.
			cur = append(cur, data...)
		} else {
			bufs = append(bufs, cur, data)
			cur = nil
		}
		cur = append(cur, zeros[:pad8(len(data))]...)
		total += len(data) + pad8(len(data))
	}
	if len(cur) > 0 {
		bufs = append(bufs, cur)
	}
	if total-4 > MaxFrameBytes {
		return nil, 0, fmt.Errorf("request of %d bytes is larger than a Python worker takes (%d)", total, MaxFrameBytes)
	}
	// bufs[0] begins with head's bytes (appends may have moved them).
	le.PutUint32(bufs[0], uint32(total-4))
	return bufs, total, nil
}

// appendStrings appends each string with its u32 length.
func appendStrings(b []byte, strs []string) []byte {
	n := 0
	for _, s := range strs {
		n += 4 + len(s)
	}
	b = slices.Grow(b, n)
	for _, s := range strs {
		b = le.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// frame is one message read from a worker.
type frame struct {
	kind byte
	id   uint64
	// payload is the body after its header.
	payload []byte
}

// errFrame marks a frame that breaks the framing: a bug in the worker, or
// something else writing to its channel.
var errFrame = errors.New("malformed frame")

// readFrame reads the next frame from r. io.EOF means r ended between
// frames.
func readFrame(r *bufio.Reader) (frame, error) {
	var f frame
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return f, err
	}
	n := le.Uint32(head[:])
	if n < bodyHeader || n > MaxFrameBytes {
		return f, fmt.Errorf("%w: body of %d bytes", errFrame, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return f, err
	}
	f.kind, f.id, f.payload = body[0], le.Uint64(body[4:]), body[bodyHeader:]
	return f, nil
}

// decodeTensors reads a RESULT payload.
func decodeTensors(p []byte) ([]oip.Tensor, error) {
	if len(p) < 4 {
		return nil, fmt.Errorf("%w: no tensor count", errFrame)
	}
	count := int(le.Uint32(p))
	// The payload is 8-byte aligned from the body's start, which is 12
	// bytes before it.
	off := 4
	if count > len(p)/tensorHeader {
		return nil, fmt.Errorf("%w: %d tensors in %d bytes", errFrame, count, len(p))
	}
	out := make([]oip.Tensor, 0, count)
	for range count {
		if len(p)-off < tensorHeader {
			return nil, fmt.Errorf("%w: tensor header cut short", errFrame)
		}
		h := p[off:]
		nlen, dlen, rank := int(le.Uint16(h)), int(h[2]), int(h[3])
		size64 := le.Uint64(h[8:])
		off += tensorHeader
		if rank > maxRank || len(p)-off < 8*rank+nlen+dlen {
			return nil, fmt.Errorf("%w: tensor header cut short", errFrame)
		}
		shape := make([]int64, rank)
		for i := range shape {
			shape[i] = int64(le.Uint64(p[off+8*i:]))
		}
		off += 8 * rank
		name := string(p[off : off+nlen])
		off += nlen
		datatype := string(p[off : off+dlen])
		off += dlen + pad8(nlen+dlen)
		if size64 > uint64(len(p)) || off > len(p) || int(size64) > len(p)-off {
			return nil, fmt.Errorf("%w: output %q: %d bytes of data past the end", errFrame, name, size64)
		}
		size := int(size64)
		t, err := decodeData(name, datatype, shape, p[off:off+size])
		if err != nil {
			return nil, err
		}
		out = append(out, t)
		off += size + pad8(size)
	}
	return out, nil
}

// decodeData returns one output tensor from its data bytes.
func decodeData(name, datatype string, shape []int64, b []byte) (oip.Tensor, error) {
	t := oip.Tensor{Name: name, Datatype: datatype, Shape: shape}
	n, err := oip.Elements(shape)
	if err != nil {
		return t, fmt.Errorf("output %q: %w", name, err)
	}
	dt, ok := dtypes[datatype]
	if !ok {
		return t, fmt.Errorf("output %q has datatype %q, which this replica does not serve", name, datatype)
	}
	if datatype != oip.BYTES {
		if len(b) != n*dt.size {
			return t, fmt.Errorf("%w: output %q: shape %s of %s needs %d bytes, got %d", errFrame, name, oip.FormatShape(shape), datatype, n*dt.size, len(b))
		}
		t.Data = dt.fromRaw(b, n)
		return t, nil
	}
	if n > len(b)/4 {
		return t, fmt.Errorf("%w: output %q: %d strings in %d bytes", errFrame, name, n, len(b))
	}
	strs := make([]string, n)
	for i := range strs {
		if len(b) < 4 || uint64(le.Uint32(b)) > uint64(len(b)-4) {
			return t, fmt.Errorf("%w: output %q: string %d cut short", errFrame, name, i)
		}
		k := int(le.Uint32(b))
		strs[i] = string(b[4 : 4+k])
		b = b[4+k:]
	}
	if len(b) != 0 {
		return t, fmt.Errorf("%w: output %q: %d bytes after its %d strings", errFrame, name, len(b), n)
	}
	t.Data = strs
	return t, nil
}

// decodeError reads an ERROR payload.
func decodeError(p []byte) (status int, msg string, err error) {
	if len(p) < 8 || uint64(le.Uint32(p[4:])) > uint64(len(p)-8) {
		return 0, "", fmt.Errorf("%w: error message cut short", errFrame)
	}
	return int(le.Uint16(p)), string(p[8 : 8+le.Uint32(p[4:])]), nil
}

// decodeText reads a READY, LOADERR or LOADED payload.
func decodeText(p []byte) (string, error) {
	if len(p) < 4 || uint64(le.Uint32(p)) > uint64(len(p)-4) {
		return "", fmt.Errorf("%w: text cut short", errFrame)
	}
	return string(p[4 : 4+le.Uint32(p)]), nil
}
