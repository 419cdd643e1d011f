package jobs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// assemble writes the job's output from the parts of chunks ids, in that
// order, as format, atomically (Storage.publish): nothing is at the
// output's location until every row is. frames says where each part is
// in the parts log.
func (st *Storage) assemble(ctx context.Context, out loc, format string, ids []string, frames map[string]frameAt) error {
	parts := st.partsReader(out)
	defer parts.close()
	return st.publish(ctx, out, func(w io.Writer) error {
		var sink rowSink
		var first partHeader
		r := bufio.NewReaderSize(nil, 1<<16)
		for i, id := range ids {
			if err := ctx.Err(); err != nil {
				return err
			}
			at, ok := frames[id]
			if !ok {
				return fmt.Errorf("chunk %d has no part", i)
			}
			body, err := parts.part(ctx, id, at)
			if err != nil {
				return fmt.Errorf("part of chunk %d: %w", i, err)
			}
			err = func() error {
				r.Reset(bytes.NewReader(body))
				head, err := readLine(r)
				if err != nil {
					return fmt.Errorf("part of chunk %d has no header: %w", i, err)
				}
				var h partHeader
				if err := json.Unmarshal(head, &h); err != nil || !(h.Part == 1 || h.Part == 2 && h.Format == serving.FormatCSV) {
					return fmt.Errorf("part of chunk %d: the header %.100q is not a part's", i, head)
				}
				if sink == nil {
					first = h
					if sink, err = newSink(format, w, h); err != nil {
						return err
					}
				} else if !sameOutputs(h, first) {
					return fmt.Errorf("chunk %d's outputs %v differ from chunk 0's %v: did the model change during the job?", i, h.Outputs, first.Outputs)
				}
				if h.Format == serving.FormatCSV { // the output's own lines
					cs, ok := sink.(*csvSink)
					if !ok {
						return fmt.Errorf("part of chunk %d holds CSV; the output is %s", i, format)
					}
					_, err := r.WriteTo(cs.w)
					return err
				}
				for {
					l, err := readLine(r)
					if err == io.EOF {
						return nil
					}
					if err != nil {
						return err
					}
					if len(l) == 0 {
						continue
					}
					if err := sink.line(l); err != nil {
						return fmt.Errorf("part of chunk %d: %w", i, err)
					}
				}
			}()
			if err != nil {
				return err
			}
		}
		if sink == nil { // no rows at all
			return nil
		}
		return sink.close()
	})
}

// sameOutputs reports whether two parts have the same columns.
func sameOutputs(a, b partHeader) bool {
	return a.ID == b.ID && a.IDText == b.IDText && slices.EqualFunc(a.Outputs, b.Outputs, func(x, y outColumn) bool {
		return x.Name == y.Name && x.Datatype == y.Datatype && x.Width == y.Width
	})
}

// readLine returns the next line without its newline; io.EOF at the end.
// The line is r's until the next read: a sink uses it before it returns.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == bufio.ErrBufferFull { // longer than the buffer
		long := bytes.Clone(line)
		for err == bufio.ErrBufferFull {
			line, err = r.ReadSlice('\n')
			long = append(long, line...)
		}
		line = long
	}
	if err == io.EOF && len(line) > 0 {
		return line, nil
	}
	if err != nil {
		return nil, err
	}
	return line[:len(line)-1], nil
}

// rowSink writes output rows, given as a part's JSON lines.
type rowSink interface {
	line(l []byte) error
	close() error
}

func newSink(format string, w io.Writer, h partHeader) (rowSink, error) {
	switch format {
	case serving.FormatJSONL:
		return jsonlSink{w}, nil
	case serving.FormatCSV:
		return newCSVSink(w, h)
	case serving.FormatParquet:
		return newParquetSink(w, h)
	}
	return nil, fmt.Errorf("unknown output format %q", format)
}

type jsonlSink struct{ w io.Writer }

func (s jsonlSink) line(l []byte) error {
	if _, err := s.w.Write(l); err != nil {
		return err
	}
	_, err := s.w.Write([]byte{'\n'})
	return err
}

func (jsonlSink) close() error { return nil }

// columnNames lists the flat columns of an output: the id, then each
// output, or name_0, name_1... for one wider than 1.
func columnNames(h partHeader) []string {
	names := []string{h.ID}
	for _, o := range h.Outputs {
		if o.Width == 1 {
			names = append(names, o.Name)
			continue
		}
		for k := range o.Width {
			names = append(names, o.Name+"_"+strconv.Itoa(k))
		}
	}
	return names
}

// flatten splits a part line into its raw values, one per column.
func flatten(h partHeader, l []byte, dst []json.RawMessage) ([]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(l, &obj); err != nil {
		return nil, fmt.Errorf("line %.100q: %v", l, err)
	}
	dst = append(dst[:0], obj[h.ID])
	for _, o := range h.Outputs {
		v := obj[o.Name]
		if o.Width == 1 {
			dst = append(dst, v)
			continue
		}
		var arr []json.RawMessage
		if err := json.Unmarshal(v, &arr); err != nil || len(arr) != o.Width {
			return nil, fmt.Errorf("output %q of line %.100q is not %d values", o.Name, l, o.Width)
		}
		dst = append(dst, arr...)
	}
	return dst, nil
}

// csvSink writes CSV as encoding/csv's Writer does (a comma, "\n" line
// ends, a field quoted when it must be), from the part's raw values
// without converting each to a string.
type csvSink struct {
	sp  splitter
	w   io.Writer
	raw []json.RawMessage
	buf []byte
}

func newCSVSink(w io.Writer, h partHeader) (*csvSink, error) {
	s := &csvSink{sp: newSplitter(h), w: w}
	for _, name := range columnNames(h) {
		s.buf = appendCSVField(s.buf, []byte(name))
	}
	return s, s.flush()
}

func (s *csvSink) line(l []byte) error {
	var err error
	if s.raw, err = s.sp.split(l, s.raw); err != nil {
		return err
	}
	for _, v := range s.raw {
		switch {
		case len(v) == 0 || string(v) == "null":
			s.buf = appendCSVField(s.buf, nil)
		case v[0] == '"':
			s.buf = appendCSVField(s.buf, jsonText(v))
		default:
			s.buf = appendCSVField(s.buf, v)
		}
	}
	return s.flush()
}

// flush ends the record in buf and writes it.
func (s *csvSink) flush() error {
	if len(s.buf) > 0 {
		s.buf[len(s.buf)-1] = '\n' // the last field's comma
	} else {
		s.buf = append(s.buf, '\n')
	}
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	return err
}

// appendCSVField appends field and a comma, quoting the field as
// encoding/csv's Writer does.
func appendCSVField(b, field []byte) []byte {
	if !csvNeedsQuotes(field) {
		return append(append(b, field...), ',')
	}
	b = append(b, '"')
	for _, c := range field {
		if c == '"' {
			b = append(b, '"')
		}
		b = append(b, c)
	}
	return append(b, '"', ',')
}

// csvNeedsQuotes is encoding/csv's rule for a comma-separated field.
func csvNeedsQuotes(field []byte) bool {
	if len(field) == 0 {
		return false
	}
	if string(field) == `\.` {
		return true
	}
	for _, c := range field {
		if c == '\n' || c == '\r' || c == '"' || c == ',' {
			return true
		}
	}
	if c := field[0]; c < utf8.RuneSelf {
		return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
	}
	r, _ := utf8.DecodeRune(field)
	return unicode.IsSpace(r)
}

// jsonText is a JSON string's text.
func jsonText(v json.RawMessage) []byte {
	if len(v) >= 2 && bytes.IndexByte(v, '\\') < 0 {
		return v[1 : len(v)-1]
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return []byte(s)
	}
	return v
}

// csvText is a JSON value as a CSV field: a string unquoted, null empty,
// anything else as written.
func csvText(v json.RawMessage) string {
	switch {
	case len(v) == 0 || string(v) == "null":
		return ""
	case v[0] == '"':
		return string(jsonText(v))
	}
	return string(v)
}

func (s *csvSink) close() error { return nil }

// parquetSink writes a Parquet file of optional columns, typed by the
// outputs' datatypes: FP64 as DOUBLE, other floats as FLOAT, integers as
// INT64 (UINT64 as unsigned), BOOL as BOOLEAN, BYTES as strings.
type parquetSink struct {
	sp    splitter
	w     *parquet.Writer
	names []string
	kinds []byte // per column: 'd' double, 'f' float, 'i' int64, 'u' uint64, 'b' bool, 's' string
	raw   []json.RawMessage
	row   map[string]any
}

func newParquetSink(w io.Writer, h partHeader) (*parquetSink, error) {
	s := &parquetSink{sp: newSplitter(h), names: columnNames(h), row: map[string]any{}}
	group := parquet.Group{}
	add := func(name string, kind byte) error {
		if _, dup := group[name]; dup {
			return fmt.Errorf("two output columns are named %q", name)
		}
		var node parquet.Node
		switch kind {
		case 'd':
			node = parquet.Leaf(parquet.DoubleType)
		case 'f':
			node = parquet.Leaf(parquet.FloatType)
		case 'i':
			node = parquet.Int(64)
		case 'u':
			node = parquet.Uint(64)
		case 'b':
			node = parquet.Leaf(parquet.BooleanType)
		default:
			node = parquet.String()
		}
		group[name] = parquet.Optional(node)
		s.kinds = append(s.kinds, kind)
		return nil
	}
	idKind := byte('i')
	if h.IDText {
		idKind = 's'
	}
	if err := add(h.ID, idKind); err != nil {
		return nil, err
	}
	k := 1
	for _, o := range h.Outputs {
		for range o.Width {
			if err := add(s.names[k], parquetKind(o.Datatype)); err != nil {
				return nil, err
			}
			k++
		}
	}
	s.w = parquet.NewWriter(w, parquet.NewSchema("output", group))
	return s, nil
}

func parquetKind(datatype string) byte {
	switch datatype {
	case oip.FP64:
		return 'd'
	case oip.FP32, oip.FP16, oip.BF16:
		return 'f'
	case oip.UINT64:
		return 'u'
	case oip.INT8, oip.INT16, oip.INT32, oip.INT64, oip.UINT8, oip.UINT16, oip.UINT32:
		return 'i'
	case oip.BOOL:
		return 'b'
	}
	return 's'
}

func (s *parquetSink) line(l []byte) error {
	var err error
	if s.raw, err = s.sp.split(l, s.raw); err != nil {
		return err
	}
	clear(s.row)
	for k, v := range s.raw {
		if len(v) == 0 || string(v) == "null" {
			continue
		}
		var x any
		switch s.kinds[k] {
		case 'd':
			x, err = strconv.ParseFloat(string(v), 64)
		case 'f':
			var f float64
			f, err = strconv.ParseFloat(string(v), 32)
			x = float32(f)
		case 'i':
			x, err = strconv.ParseInt(string(v), 10, 64)
		case 'u':
			x, err = strconv.ParseUint(string(v), 10, 64)
		case 'b':
			x, err = strconv.ParseBool(string(v))
		default:
			x = csvText(v)
		}
		if err != nil {
			return fmt.Errorf("column %q: %.60q does not fit: %v", s.names[k], v, err)
		}
		s.row[s.names[k]] = x
	}
	return s.w.Write(s.row)
}

func (s *parquetSink) close() error {
	return s.w.Close()
}
