package jobs

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/ebb-ml/ebb/internal/serving"
)

// cellKind says what a cell holds.
type cellKind uint8

const (
	cellMissing cellKind = iota // the row has no such column
	cellNull                    // null, or an empty optional value
	cellText                    // text: CSV fields, JSON strings and number literals
	cellFloat                   // a float (Parquet)
	cellInt                     // an integer (Parquet)
	cellBool                    // a boolean (JSON, Parquet)
	cellJSON                    // a JSON object or array, in text
)

// cell is one value of a row as read.
type cell struct {
	kind cellKind
	text string
	num  float64
	i    int64
	b    bool
}

// rowError is a row that cannot be read or does not fit the mapping; the
// job's onBadRow policy decides whether it fails the job.
type rowError struct {
	row int64 // from 0
	msg string
}

func (e *rowError) Error() string { return fmt.Sprintf("row %d: %s", e.row, e.msg) }

// rowReader reads an input's rows in order, each as the cells of the
// wanted columns.
type rowReader interface {
	// next fills row (one cell per wanted column) with the next row; it
	// returns io.EOF after the last, and a *rowError for a row it cannot
	// read (reading goes on after it).
	next(row []cell) error
	// skip passes over n rows.
	skip(n int64) error
}

// openRows returns a reader of obj's rows in format, checking that the
// wanted columns exist where the format says what columns it has (a CSV
// header, a Parquet schema): a *SchemaError names the one missing.
func openRows(format string, obj object, size int64, wanted []string) (rowReader, error) {
	switch format {
	case serving.FormatCSV:
		return newCSVRows(obj, wanted)
	case serving.FormatJSONL:
		return &jsonlRows{r: bufio.NewReaderSize(obj, 1<<16), wanted: wanted}, nil
	case serving.FormatParquet:
		return newParquetRows(obj, size, wanted)
	}
	return nil, fmt.Errorf("unknown input format %q", format)
}

// countRows counts the rows of obj in format.
func countRows(format string, obj object, size int64) (int64, error) {
	switch format {
	case serving.FormatParquet:
		f, err := parquet.OpenFile(obj, size)
		if err != nil {
			return 0, fmt.Errorf("not a Parquet file: %w", err)
		}
		return f.NumRows(), nil
	case serving.FormatCSV:
		n, _, err := countCSV(obj, size)
		return n, err
	case serving.FormatJSONL:
		r := &jsonlRows{r: bufio.NewReaderSize(obj, 1<<16)}
		var n int64
		for {
			line, err := r.line()
			if err == io.EOF {
				return n, nil
			}
			if err != nil {
				return 0, err
			}
			if len(line) > 0 {
				n++
			}
		}
	}
	return 0, fmt.Errorf("unknown input format %q", format)
}

// SchemaError says that a column the mapping names is not in the input.
type SchemaError struct {
	Column, Tensor string
	// Have lists the input's columns, when known.
	Have []string
}

func (e *SchemaError) Error() string {
	msg := fmt.Sprintf("column %q (of tensor %q) is not in the input", e.Column, e.Tensor)
	if e.Tensor == "" {
		msg = fmt.Sprintf("id column %q is not in the input", e.Column)
	}
	if len(e.Have) > 0 {
		have := e.Have
		if len(have) > 20 {
			have = append(have[:20:20], "...")
		}
		msg += ": it has " + strings.Join(have, ", ")
	}
	return msg
}

// errEmptyCSV is a CSV input without even a header line.
var errEmptyCSV = errors.New("the CSV input is empty: it needs a header line")

// csvRows reads CSV with a header line.
type csvRows struct {
	r   *csv.Reader
	idx []int // column of each wanted name
}

func newCSVRows(obj io.Reader, wanted []string) (*csvRows, error) {
	r := csv.NewReader(bufio.NewReaderSize(obj, 1<<16))
	r.FieldsPerRecord, r.ReuseRecord = -1, true
	header, err := r.Read()
	if err == io.EOF {
		return nil, errEmptyCSV
	}
	if err != nil {
		return nil, fmt.Errorf("the CSV header cannot be read: %w", err)
	}
	idx, err := headerIndex(header, wanted)
	if err != nil {
		return nil, err
	}
	return &csvRows{r: r, idx: idx}, nil
}

// headerIndex returns the column of each wanted name in a CSV header: a
// *SchemaError names the first one missing.
func headerIndex(header, wanted []string) ([]int, error) {
	cols := map[string]int{}
	names := make([]string, len(header))
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\uFEFF")
		}
		h = strings.TrimSpace(h)
		names[i] = h
		if _, dup := cols[h]; !dup {
			cols[h] = i
		}
	}
	idx := make([]int, len(wanted))
	for i, w := range wanted {
		j, ok := cols[w]
		if !ok {
			return nil, &SchemaError{Column: w, Have: names}
		}
		idx[i] = j
	}
	return idx, nil
}

func (c *csvRows) next(row []cell) error {
	rec, err := c.r.Read()
	if err != nil {
		if pe, ok := errors.AsType[*csv.ParseError](err); ok {
			return fmt.Errorf("the CSV input is malformed at line %d: %v", pe.Line, pe.Err)
		}
		return err
	}
	for i, j := range c.idx {
		if j < len(rec) {
			row[i] = cell{kind: cellText, text: rec[j]}
		} else {
			row[i] = cell{kind: cellMissing}
		}
	}
	return nil
}

func (c *csvRows) skip(n int64) error {
	for range n {
		if _, err := c.r.Read(); err != nil {
			return err
		}
	}
	return nil
}

// jsonlRows reads one JSON object per line; blank lines are not rows.
type jsonlRows struct {
	r      *bufio.Reader
	wanted []string
	n      int64 // rows read
	buf    []byte
}

// line returns the next line, trimmed; io.EOF after the last.
func (j *jsonlRows) line() ([]byte, error) {
	j.buf = j.buf[:0]
	for {
		part, err := j.r.ReadSlice('\n')
		j.buf = append(j.buf, part...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(j.buf) > 0 {
			return bytes.TrimSpace(j.buf), nil
		}
		if err != nil {
			return nil, err
		}
		return bytes.TrimSpace(j.buf), nil
	}
}

// nonBlank returns the next line that is not blank.
func (j *jsonlRows) nonBlank() ([]byte, error) {
	for {
		l, err := j.line()
		if err != nil || len(l) > 0 {
			return l, err
		}
	}
}

func (j *jsonlRows) next(row []cell) error {
	l, err := j.nonBlank()
	if err != nil {
		return err
	}
	n := j.n
	j.n++
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(l, &obj); err != nil {
		return &rowError{row: n, msg: fmt.Sprintf("not a JSON object: %v", err)}
	}
	for i, w := range j.wanted {
		row[i] = jsonCell(obj[w])
	}
	return nil
}

func jsonCell(v json.RawMessage) cell {
	if len(v) == 0 {
		return cell{kind: cellMissing}
	}
	switch v[0] {
	case 'n':
		return cell{kind: cellNull}
	case 't', 'f':
		return cell{kind: cellBool, b: v[0] == 't'}
	case '"':
		var s string
		if json.Unmarshal(v, &s) != nil {
			return cell{kind: cellJSON, text: string(v)}
		}
		return cell{kind: cellText, text: s}
	case '{', '[':
		return cell{kind: cellJSON, text: string(v)}
	}
	return cell{kind: cellText, text: string(v)}
}

func (j *jsonlRows) skip(n int64) error {
	for range n {
		if _, err := j.nonBlank(); err != nil {
			return err
		}
		j.n++
	}
	return nil
}

// parquetRows reads a Parquet file's flat columns.
type parquetRows struct {
	r    *parquet.Reader
	idx  map[int]int // leaf column → wanted index
	buf  []parquet.Row
	n, i int   // rows in buf, next one
	pos  int64 // rows taken from r
	want int
}

func newParquetRows(obj io.ReaderAt, size int64, wanted []string) (*parquetRows, error) {
	f, err := parquet.OpenFile(obj, size)
	if err != nil {
		return nil, fmt.Errorf("the input is not a Parquet file: %w", err)
	}
	schema := f.Schema()
	var names []string
	for _, p := range schema.Columns() {
		names = append(names, strings.Join(p, "."))
	}
	p := &parquetRows{r: parquet.NewReader(f), idx: map[int]int{}, buf: make([]parquet.Row, 256), want: len(wanted)}
	for i, w := range wanted {
		leaf, ok := schema.Lookup(w)
		if !ok {
			return nil, &SchemaError{Column: w, Have: names}
		}
		if leaf.MaxRepetitionLevel > 0 {
			return nil, fmt.Errorf("column %q of the Parquet input is a list: a job reads columns of one value per row", w)
		}
		if _, dup := p.idx[leaf.ColumnIndex]; dup {
			return nil, fmt.Errorf("column %q is read twice: map each column to one tensor, or give it as the id column only", w)
		}
		p.idx[leaf.ColumnIndex] = i
	}
	return p, nil
}

func (p *parquetRows) next(row []cell) error {
	if p.i == p.n {
		n, err := p.r.ReadRows(p.buf)
		p.pos += int64(n)
		if n == 0 {
			if err == nil {
				err = io.EOF
			}
			return err
		}
		p.n, p.i = n, 0
	}
	for k := range row[:p.want] {
		row[k] = cell{kind: cellMissing}
	}
	for _, v := range p.buf[p.i] {
		k, ok := p.idx[v.Column()]
		if !ok {
			continue
		}
		row[k] = parquetCell(v)
	}
	p.i++
	return nil
}

func parquetCell(v parquet.Value) cell {
	if v.IsNull() {
		return cell{kind: cellNull}
	}
	switch v.Kind() {
	case parquet.Boolean:
		return cell{kind: cellBool, b: v.Boolean()}
	case parquet.Int32:
		return cell{kind: cellInt, i: int64(v.Int32())}
	case parquet.Int64:
		return cell{kind: cellInt, i: v.Int64()}
	case parquet.Float:
		return cell{kind: cellFloat, num: float64(v.Float())}
	case parquet.Double:
		return cell{kind: cellFloat, num: v.Double()}
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return cell{kind: cellText, text: string(v.ByteArray())}
	}
	return cell{kind: cellText, text: v.String()}
}

func (p *parquetRows) skip(n int64) error {
	for n > 0 && p.i < p.n {
		p.i++
		n--
	}
	if n == 0 {
		return nil
	}
	p.pos += n
	return p.r.SeekToRow(p.pos)
}

// textValue returns c as text, for BYTES tensors and ids.
func (c cell) textValue() string {
	switch c.kind {
	case cellText, cellJSON:
		return c.text
	case cellFloat:
		return strconv.FormatFloat(c.num, 'g', -1, 64)
	case cellInt:
		return strconv.FormatInt(c.i, 10)
	case cellBool:
		return strconv.FormatBool(c.b)
	}
	return ""
}
