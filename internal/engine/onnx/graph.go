package onnx

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/encoding/protowire"
)

// ONNX Runtime reports a tensor declared without any shape and a scalar
// (shape []) alike, with no dimensions. They differ for a client: a scalar
// input takes shape [] only, a shapeless one takes any shape. declaredShapes
// reads the difference from the model file itself, the ModelProto of
// onnx.proto, walking only what it needs:
//
//	ModelProto.graph (7) → GraphProto.input (11) / output (12)
//	  → ValueInfoProto{name (1), type (2)} → TypeProto.tensor_type (1)
//	  → TypeProto.Tensor.shape (2): present or not
//
// Everything else, initializers (the weights) above all, is skipped by
// seeking past it, so a large model costs a few reads.

// Field numbers of onnx.proto.
const (
	modelGraph      = 7
	graphInput      = 11
	graphOutput     = 12
	valueInfoName   = 1
	valueInfoType   = 2
	typeTensor      = 1
	tensorTypeShape = 2
)

// maxValueInfo bounds the bytes of one ValueInfoProto read into memory; a
// larger one (a huge doc string) is skipped, its tensor taken as shaped.
const maxValueInfo = 1 << 20

// shapes says, for the graph's inputs and outputs by name, whether the
// model declares a shape.
type shapes struct {
	inputs, outputs map[string]bool
}

// declaredShapes reads which graph inputs and outputs of the ONNX model at
// path declare a shape. An error means the file is not a ModelProto this
// reader understands (ONNX Runtime may still load it, in its own format).
func declaredShapes(path string) (shapes, error) {
	f, err := os.Open(path)
	if err != nil {
		return shapes{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return shapes{}, err
	}
	r := &protoReader{f: f, br: bufio.NewReaderSize(f, 64<<10), size: st.Size()}
	s := shapes{inputs: map[string]bool{}, outputs: map[string]bool{}}
	for {
		num, typ, err := r.tag()
		if errors.Is(err, io.EOF) {
			return s, nil
		}
		if err != nil {
			return s, err
		}
		if num == modelGraph && typ == protowire.BytesType {
			n, err := r.varint()
			if err != nil {
				return s, err
			}
			return s, r.graph(int64(n), s)
		}
		if err := r.skip(typ); err != nil {
			return s, err
		}
	}
}

// protoReader reads protobuf fields from a file, seeking past those it
// skips.
type protoReader struct {
	f  io.ReadSeeker
	br *bufio.Reader
	// off is the offset in the file of the next byte br returns.
	off int64
	// size is the file's length: no length a field claims may run past it,
	// so what is read into memory stays in proportion to the file.
	size int64
}

func (r *protoReader) ReadByte() (byte, error) {
	b, err := r.br.ReadByte()
	if err == nil {
		r.off++
	}
	return b, err
}

func (r *protoReader) varint() (uint64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("malformed varint")
}

func (r *protoReader) tag() (protowire.Number, protowire.Type, error) {
	v, err := r.varint()
	if err != nil {
		return 0, 0, err
	}
	num, typ := protowire.DecodeTag(v)
	if num < protowire.MinValidNumber {
		return 0, 0, fmt.Errorf("malformed field number %d", num)
	}
	return num, typ, nil
}

// discard skips n bytes, seeking when they are not buffered.
func (r *protoReader) discard(n int64) error {
	if n < 0 {
		return errors.New("malformed length")
	}
	if n <= int64(r.br.Buffered()) {
		_, err := r.br.Discard(int(n))
		r.off += n
		return err
	}
	r.off += n
	if _, err := r.f.Seek(r.off, io.SeekStart); err != nil {
		return err
	}
	r.br.Reset(r.f)
	return nil
}

// skip skips the value of a field of wire type typ.
func (r *protoReader) skip(typ protowire.Type) error {
	switch typ {
	case protowire.VarintType:
		_, err := r.varint()
		return err
	case protowire.Fixed32Type:
		return r.discard(4)
	case protowire.Fixed64Type:
		return r.discard(8)
	case protowire.BytesType:
		n, err := r.varint()
		if err != nil {
			return err
		}
		return r.discard(int64(n))
	}
	return fmt.Errorf("unsupported wire type %d", typ)
}

// graph reads the GraphProto of n bytes at the current offset.
func (r *protoReader) graph(n int64, s shapes) error {
	if n < 0 || n > r.size-r.off {
		return errors.New("malformed model: the graph runs past the end of the file")
	}
	end := r.off + n
	for r.off < end {
		num, typ, err := r.tag()
		if err != nil {
			return err
		}
		if typ != protowire.BytesType || (num != graphInput && num != graphOutput) {
			if err := r.skip(typ); err != nil {
				return err
			}
			continue
		}
		l, err := r.varint()
		if err != nil {
			return err
		}
		if r.off > end || l > uint64(end-r.off) {
			return errors.New("malformed graph: a field runs past its end")
		}
		if l > maxValueInfo {
			if err := r.discard(int64(l)); err != nil {
				return err
			}
			continue
		}
		b := make([]byte, l)
		if _, err := io.ReadFull(r.br, b); err != nil {
			return err
		}
		r.off += int64(l)
		name, shaped, err := valueInfo(b)
		if err != nil {
			return err
		}
		if num == graphInput {
			s.inputs[name] = shaped
		} else {
			s.outputs[name] = shaped
		}
	}
	return nil
}

// valueInfo reads a ValueInfoProto: the tensor's name and whether its type
// declares a shape (a value that is not a tensor counts as shaped).
func valueInfo(b []byte) (string, bool, error) {
	var name string
	shaped := true
	err := eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case valueInfoName:
			name = string(v)
		case valueInfoType:
			return eachField(v, func(num protowire.Number, v []byte) error {
				if num != typeTensor {
					return nil
				}
				shaped = false
				return eachField(v, func(num protowire.Number, _ []byte) error {
					if num == tensorTypeShape {
						shaped = true
					}
					return nil
				})
			})
		}
		return nil
	})
	return name, shaped, err
}

// eachField calls f with the number and bytes of every length-delimited
// field of the message b, skipping the others.
func eachField(b []byte, f func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		if err := f(num, v); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
