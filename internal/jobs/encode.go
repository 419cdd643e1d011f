package jobs

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// mapping is a job's column-to-tensor mapping in the form the encoder
// uses: the columns read, in order (each tensor's, then the id column),
// and for each tensor where its columns are in that list.
type mapping struct {
	wanted  []string
	tensors []tensorMap
	idIndex int    // index in wanted of the id column; -1: row numbers
	idName  string // the id's field in the output: the id column, or "row"
}

type tensorMap struct {
	name, datatype string
	cols           []int // indexes in wanted
	names          []string
}

func newMapping(in serving.JobInput) *mapping {
	m := &mapping{idIndex: -1, idName: "row"}
	index := map[string]int{}
	col := func(name string) int {
		if i, ok := index[name]; ok {
			return i
		}
		index[name] = len(m.wanted)
		m.wanted = append(m.wanted, name)
		return index[name]
	}
	for _, tc := range in.Columns {
		t := tensorMap{name: tc.Tensor, datatype: tc.Datatype, names: tc.Columns}
		if t.datatype == "" {
			t.datatype = oip.FP32
		}
		for _, c := range tc.Columns {
			t.cols = append(t.cols, col(c))
		}
		m.tensors = append(m.tensors, t)
	}
	if in.IDColumn != "" {
		m.idIndex, m.idName = col(in.IDColumn), in.IDColumn
	}
	return m
}

// tensorOf names the tensor a wanted column belongs to, for messages.
func (m *mapping) tensorOf(col string) string {
	for _, t := range m.tensors {
		for _, n := range t.names {
			if n == col {
				return t.name
			}
		}
	}
	return ""
}

// outID identifies an output row: its row number, or its id column's text.
type outID struct {
	row  int64
	text string
}

// batch gathers the rows of one chunk into typed tensor data.
type batch struct {
	m    *mapping
	ids  []outID
	cols []column // per tensor
	bad  []string
	// borrowed: the text of the cells added is valid only during add
	// (plainCSVRows'), so the text kept (ids, BYTES) is copied.
	borrowed bool
	// floats: every tensor is FP32, so addFloats may take a row.
	floats bool
}

// column is one tensor's data, in the slice of its datatype: FP32 (and
// any datatype a mapping does not know) in f32, FP64 in f64, INT32 in
// i32, INT64 in i64, BOOL in b, BYTES in s. Appending a cell needs no
// interface conversion: a chunk of a thousand rows of ten columns makes
// no garbage per cell.
type column struct {
	datatype string
	f32      []float32
	f64      []float64
	i32      []int32
	i64      []int64
	b        []bool
	s        []string
}

func newBatch(m *mapping, rows int) *batch {
	b := &batch{m: m, ids: make([]outID, 0, rows), cols: make([]column, len(m.tensors)), floats: true}
	for i, t := range m.tensors {
		n := rows * len(t.cols)
		c := &b.cols[i]
		c.datatype = t.datatype
		switch t.datatype {
		case oip.FP64:
			c.f64 = make([]float64, 0, n)
		case oip.INT32:
			c.i32 = make([]int32, 0, n)
		case oip.INT64:
			c.i64 = make([]int64, 0, n)
		case oip.BOOL:
			c.b = make([]bool, 0, n)
		case oip.BYTES:
			c.s = make([]string, 0, n)
		default:
			c.datatype = oip.FP32
			c.f32 = make([]float32, 0, n)
		}
		b.floats = b.floats && c.datatype == oip.FP32
	}
	return b
}

// rows is the number of good rows in the batch.
func (b *batch) rows() int { return len(b.ids) }

// add appends input row number row, whose cells are row's; a value that
// does not fit its tensor is a *rowError, and the batch is left as it was.
func (b *batch) add(num int64, row []cell) error {
	for i, t := range b.m.tensors {
		c := &b.cols[i]
		mark := c.len()
		for k, ci := range t.cols {
			v := row[ci]
			if b.borrowed && c.datatype == oip.BYTES {
				v.text = strings.Clone(v.text)
			}
			if err := c.append(v); err != nil {
				c.truncate(mark)
				for j := range b.cols[:i] { // those before are whole: a row each
					b.cols[j].truncate(b.cols[j].len() - len(b.m.tensors[j].cols))
				}
				return &rowError{row: num, msg: fmt.Sprintf("column %q (tensor %q, %s): %v", t.names[k], t.name, t.datatype, err)}
			}
		}
	}
	id := outID{row: num}
	if b.m.idIndex >= 0 {
		id.text = row[b.m.idIndex].textValue()
		if b.borrowed {
			id.text = strings.Clone(id.text)
		}
	}
	b.ids = append(b.ids, id)
	return nil
}

// addFloats is add for a batch of FP32 tensors (b.floats) and a row of
// plain CSV fields, rec, whose wanted columns are at idx: it parses the
// numbers parseFloat's fast path takes straight into the batch, with no
// cell between. For any other row it reports false, the batch left as it
// was, and add takes the row (and judges it).
func (b *batch) addFloats(num int64, rec []string, idx []int) bool {
	for i, t := range b.m.tensors {
		c := &b.cols[i]
		for _, ci := range t.cols {
			var f float64
			ok := idx[ci] < len(rec)
			if ok {
				f, ok = fastFloat(rec[idx[ci]], 32)
			}
			if !ok {
				for j := range b.cols[:i+1] {
					b.cols[j].f32 = b.cols[j].f32[:len(b.ids)*len(b.m.tensors[j].cols)]
				}
				return false
			}
			c.f32 = append(c.f32, float32(f))
		}
	}
	id := outID{row: num}
	if b.m.idIndex >= 0 {
		j := idx[b.m.idIndex]
		if j >= len(rec) {
			for k := range b.cols {
				b.cols[k].f32 = b.cols[k].f32[:len(b.ids)*len(b.m.tensors[k].cols)]
			}
			return false
		}
		id.text = strings.Clone(rec[j])
	}
	b.ids = append(b.ids, id)
	return true
}

func (c *column) len() int {
	return len(c.f32) + len(c.f64) + len(c.i32) + len(c.i64) + len(c.b) + len(c.s)
}

func (c *column) truncate(n int) {
	switch c.datatype {
	case oip.FP64:
		c.f64 = c.f64[:n]
	case oip.INT32:
		c.i32 = c.i32[:n]
	case oip.INT64:
		c.i64 = c.i64[:n]
	case oip.BOOL:
		c.b = c.b[:n]
	case oip.BYTES:
		c.s = c.s[:n]
	default:
		c.f32 = c.f32[:n]
	}
}

// data is the column's slice, as oip.Tensor's Data.
func (c *column) data() any {
	switch c.datatype {
	case oip.FP64:
		return c.f64
	case oip.INT32:
		return c.i32
	case oip.INT64:
		return c.i64
	case oip.BOOL:
		return c.b
	case oip.BYTES:
		return c.s
	}
	return c.f32
}

// append converts v to the column's datatype and appends it.
func (c *column) append(v cell) error {
	switch v.kind {
	case cellMissing:
		return fmt.Errorf("no value: the row lacks the column")
	case cellNull:
		return fmt.Errorf("no value: null")
	}
	switch c.datatype {
	case oip.BYTES:
		c.s = append(c.s, v.textValue())
	case oip.BOOL:
		x, err := boolOf(v)
		if err != nil {
			return err
		}
		c.b = append(c.b, x)
	case oip.FP64:
		f, err := floatOf(v, 64)
		if err != nil {
			return err
		}
		c.f64 = append(c.f64, f)
	case oip.INT32:
		n, err := intOf(v)
		if err != nil {
			return err
		}
		if n < math.MinInt32 || n > math.MaxInt32 {
			return fmt.Errorf("%d is out of the range of INT32", n)
		}
		c.i32 = append(c.i32, int32(n))
	case oip.INT64:
		n, err := intOf(v)
		if err != nil {
			return err
		}
		c.i64 = append(c.i64, n)
	default:
		f, err := floatOf(v, 32)
		if err != nil {
			return err
		}
		c.f32 = append(c.f32, float32(f))
	}
	return nil
}

func boolOf(c cell) (bool, error) {
	switch c.kind {
	case cellBool:
		return c.b, nil
	case cellInt:
		return c.i != 0, nil
	case cellText:
		v, err := strconv.ParseBool(strings.TrimSpace(c.text))
		if err != nil {
			return false, fmt.Errorf("%s is not a boolean", quoteValue(c.text))
		}
		return v, nil
	}
	return false, fmt.Errorf("%s does not fit", quoteValue(c.textValue()))
}

// floatOf reads a number for a tensor of bits-bit floats: text is parsed
// at that precision (rounded once, as strconv.ParseFloat(s, 32) does); a
// number too large for it is an infinity, as a conversion makes it.
func floatOf(c cell, bits int) (float64, error) {
	switch c.kind {
	case cellFloat:
		return c.num, nil
	case cellInt:
		return float64(c.i), nil
	case cellBool:
		if c.b {
			return 1, nil
		}
		return 0, nil
	case cellText:
		v, err := parseFloat(trimSpace(c.text), bits)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("%s is not a number", quoteValue(c.text))
		}
		return v, nil
	}
	return 0, fmt.Errorf("%s is not a number", quoteValue(c.text))
}

func intOf(c cell) (int64, error) {
	switch c.kind {
	case cellInt:
		return c.i, nil
	case cellBool:
		if c.b {
			return 1, nil
		}
		return 0, nil
	case cellFloat:
		if c.num != math.Trunc(c.num) || math.Abs(c.num) > 1<<53 {
			return 0, fmt.Errorf("%g is not an integer", c.num)
		}
		return int64(c.num), nil
	case cellText:
		v, err := strconv.ParseInt(strings.TrimSpace(c.text), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s is not an integer", quoteValue(c.text))
		}
		return v, nil
	}
	return 0, fmt.Errorf("%s is not an integer", quoteValue(c.text))
}

// trimSpace is strings.TrimSpace, at the cost of two comparisons for
// text with no space at either end.
func trimSpace(s string) string {
	if len(s) > 0 && s[0] > ' ' && s[len(s)-1] > ' ' && s[0] < 0x80 && s[len(s)-1] < 0x80 {
		return s
	}
	return strings.TrimSpace(s)
}

// quoteValue quotes a value for a message, clipped.
func quoteValue(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}

// binaryOutputs asks a replica for every output as binary tensor data.
var binaryOutputs = map[string]any{oip.ParamBinaryDataOutput: true}

// request returns the OIP v2 infer request of the batch: one tensor of
// shape [rows, columns] per mapping entry, with binary tensor data, and
// asking for binary outputs.
func (b *batch) request(id string) (Message, error) {
	inputs := make([]oip.Tensor, len(b.m.tensors))
	for i, t := range b.m.tensors {
		inputs[i] = oip.Tensor{Name: t.name, Datatype: b.cols[i].datatype, Shape: []int64{int64(b.rows()), int64(len(t.cols))}, Data: b.cols[i].data()}
	}
	body, n, err := oip.RequestBody(oip.InferRequest{ID: id, Parameters: binaryOutputs}, inputs, true)
	return Message{Body: body, HeaderLength: n}, err
}
