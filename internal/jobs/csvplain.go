package jobs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unsafe"
)

// A CSV input without a single quote character, the common case, is
// counted and read here without encoding/csv: its records are its
// non-empty lines and its fields what lies between commas, which is what
// encoding/csv makes of such text ("\r\n" read as "\n", a "\r" before the
// end of the input dropped, empty lines skipped). A quote anywhere sends
// the whole input to encoding/csv (csvRows).

// countCSV counts the records of a CSV input less its header, and reports
// whether it has no quote (plain: plainCSVRows reads it).
func countCSV(obj object, size int64) (n int64, plain bool, err error) {
	if n, plain, err = countLines(obj); err != nil || plain {
		return max(n-1, 0), plain, err // less the header
	}
	rr, err := newCSVRows(io.NewSectionReader(obj, 0, size), nil)
	if errors.Is(err, errEmptyCSV) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("not CSV: %w", err)
	}
	for {
		_, err := rr.r.Read()
		if err == io.EOF {
			return n, false, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("not CSV: %w", err)
		}
		n++
	}
}

// countLines counts the records of a CSV text that has no quote at all,
// as encoding/csv reads them: lines, less the empty ones ("" and "\r").
// It reports ok false, having read part of r, when it meets a quote.
func countLines(r io.Reader) (n int64, ok bool, err error) {
	buf := make([]byte, 1<<18)
	var lineLen int // bytes of the current line so far
	var first byte  // its first byte
	record := func() bool { return lineLen > 1 || (lineLen == 1 && first != '\r') }
	for {
		k, rerr := r.Read(buf)
		b := buf[:k]
		if bytes.IndexByte(b, '"') >= 0 {
			return 0, false, nil
		}
		for len(b) > 0 {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				i = len(b)
			}
			if lineLen == 0 && i > 0 {
				first = b[0]
			}
			lineLen += i
			if i == len(b) {
				break
			}
			if record() {
				n++
			}
			lineLen, b = 0, b[i+1:]
		}
		if rerr == io.EOF {
			if record() {
				n++
			}
			return n, true, nil
		}
		if rerr != nil {
			return 0, false, rerr
		}
	}
}

// plainCSVRows reads a CSV input that has no quote (see countCSV).
type plainCSVRows struct {
	r      *bufio.Reader
	idx    []int // column of each wanted name
	fields []string
}

func newPlainCSVRows(obj io.Reader, wanted []string) (*plainCSVRows, error) {
	c := &plainCSVRows{r: bufio.NewReaderSize(obj, 1<<16)}
	header, err := c.record()
	if err == io.EOF {
		return nil, errEmptyCSV
	}
	if err != nil {
		return nil, fmt.Errorf("the CSV header cannot be read: %w", err)
	}
	if c.idx, err = headerIndex(header, wanted); err != nil {
		return nil, err
	}
	return c, nil
}

// record returns the next record's fields, valid until the next call:
// they are the reader's buffer, not copies (most fields are numbers,
// parsed at once; batch.add copies the text it keeps).
func (c *plainCSVRows) record() ([]string, error) {
	for {
		line, err := readLine(c.r)
		if err != nil {
			return nil, err
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1] // "\r\n", or a "\r" at the end of the input
		}
		if len(line) == 0 {
			continue
		}
		s := unsafe.String(unsafe.SliceData(line), len(line))
		c.fields = c.fields[:0]
		for {
			i := strings.IndexByte(s, ',')
			if i < 0 {
				c.fields = append(c.fields, s)
				return c.fields, nil
			}
			c.fields = append(c.fields, s[:i])
			s = s[i+1:]
		}
	}
}

func (c *plainCSVRows) next(row []cell) error {
	rec, err := c.record()
	if err != nil {
		return err
	}
	c.cells(rec, row)
	return nil
}

// nextInto reads the next record straight into b when b's fast path
// takes it (batch.addFloats), and reports true; else into row's cells,
// for batch.add to take or refuse.
func (c *plainCSVRows) nextInto(b *batch, num int64, row []cell) (bool, error) {
	rec, err := c.record()
	if err != nil {
		return false, err
	}
	if b.floats && b.addFloats(num, rec, c.idx) {
		return true, nil
	}
	c.cells(rec, row)
	return false, nil
}

// cells sets row's cells from the record's fields.
func (c *plainCSVRows) cells(rec []string, row []cell) {
	for i, j := range c.idx {
		if j < len(rec) {
			row[i] = cell{kind: cellText, text: rec[j]}
		} else {
			row[i] = cell{kind: cellMissing}
		}
	}
}

func (c *plainCSVRows) skip(n int64) error {
	for range n {
		if _, err := c.record(); err != nil {
			return err
		}
	}
	return nil
}
