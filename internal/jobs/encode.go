package jobs

import (
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
	data []any // per tensor: []float32, []float64, []int32, []int64, []bool or []string
	bad  []string
}

func newBatch(m *mapping, rows int) *batch {
	b := &batch{m: m, ids: make([]outID, 0, rows), data: make([]any, len(m.tensors))}
	for i, t := range m.tensors {
		n := rows * len(t.cols)
		switch t.datatype {
		case oip.FP64:
			b.data[i] = make([]float64, 0, n)
		case oip.INT32:
			b.data[i] = make([]int32, 0, n)
		case oip.INT64:
			b.data[i] = make([]int64, 0, n)
		case oip.BOOL:
			b.data[i] = make([]bool, 0, n)
		case oip.BYTES:
			b.data[i] = make([]string, 0, n)
		default:
			b.data[i] = make([]float32, 0, n)
		}
	}
	return b
}

// rows is the number of good rows in the batch.
func (b *batch) rows() int { return len(b.ids) }

// add appends input row number row, whose cells are row's; a value that
// does not fit its tensor is a *rowError, and the batch is left as it was.
func (b *batch) add(num int64, row []cell) error {
	mark := make([]int, len(b.data))
	for i, d := range b.data {
		mark[i] = dataLen(d)
	}
	for i, t := range b.m.tensors {
		for k, c := range t.cols {
			var err error
			if b.data[i], err = appendCell(b.data[i], t.datatype, row[c]); err != nil {
				for j := range b.data {
					b.data[j] = truncate(b.data[j], mark[j])
				}
				return &rowError{row: num, msg: fmt.Sprintf("column %q (tensor %q, %s): %v", t.names[k], t.name, t.datatype, err)}
			}
		}
	}
	id := outID{row: num}
	if b.m.idIndex >= 0 {
		id.text = row[b.m.idIndex].textValue()
	}
	b.ids = append(b.ids, id)
	return nil
}

func dataLen(d any) int {
	switch d := d.(type) {
	case []float32:
		return len(d)
	case []float64:
		return len(d)
	case []int32:
		return len(d)
	case []int64:
		return len(d)
	case []bool:
		return len(d)
	case []string:
		return len(d)
	}
	return 0
}

func truncate(d any, n int) any {
	switch d := d.(type) {
	case []float32:
		return d[:n]
	case []float64:
		return d[:n]
	case []int32:
		return d[:n]
	case []int64:
		return d[:n]
	case []bool:
		return d[:n]
	case []string:
		return d[:n]
	}
	return d
}

// appendCell converts c to datatype and appends it to d.
func appendCell(d any, datatype string, c cell) (any, error) {
	switch c.kind {
	case cellMissing:
		return d, fmt.Errorf("no value: the row lacks the column")
	case cellNull:
		return d, fmt.Errorf("no value: null")
	}
	switch d := d.(type) {
	case []string:
		return append(d, c.textValue()), nil
	case []bool:
		switch {
		case c.kind == cellBool:
			return append(d, c.b), nil
		case c.kind == cellInt:
			return append(d, c.i != 0), nil
		case c.kind == cellText:
			v, err := strconv.ParseBool(strings.TrimSpace(c.text))
			if err != nil {
				return d, fmt.Errorf("%s is not a boolean", quoteValue(c.text))
			}
			return append(d, v), nil
		}
	case []float32, []float64:
		var f float64
		switch c.kind {
		case cellFloat:
			f = c.num
		case cellInt:
			f = float64(c.i)
		case cellBool:
			if c.b {
				f = 1
			}
		case cellText:
			v, err := strconv.ParseFloat(strings.TrimSpace(c.text), 64)
			if err != nil {
				return d, fmt.Errorf("%s is not a number", quoteValue(c.text))
			}
			f = v
		default:
			return d, fmt.Errorf("%s is not a number", quoteValue(c.text))
		}
		if f32, ok := d.([]float32); ok {
			return append(f32, float32(f)), nil
		}
		return append(d.([]float64), f), nil
	case []int32, []int64:
		var n int64
		switch c.kind {
		case cellInt:
			n = c.i
		case cellBool:
			if c.b {
				n = 1
			}
		case cellFloat:
			if c.num != math.Trunc(c.num) || math.Abs(c.num) > 1<<53 {
				return d, fmt.Errorf("%g is not an integer", c.num)
			}
			n = int64(c.num)
		case cellText:
			v, err := strconv.ParseInt(strings.TrimSpace(c.text), 10, 64)
			if err != nil {
				return d, fmt.Errorf("%s is not an integer", quoteValue(c.text))
			}
			n = v
		default:
			return d, fmt.Errorf("%s is not an integer", quoteValue(c.text))
		}
		if i32, ok := d.([]int32); ok {
			if n < math.MinInt32 || n > math.MaxInt32 {
				return d, fmt.Errorf("%d is out of the range of INT32", n)
			}
			return append(i32, int32(n)), nil
		}
		return append(d.([]int64), n), nil
	}
	return d, fmt.Errorf("%s does not fit", quoteValue(c.textValue()))
}

// quoteValue quotes a value for a message, clipped.
func quoteValue(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}

// body returns the OIP v2 infer request of the batch, in JSON: one tensor
// of shape [rows, columns] per mapping entry.
func (b *batch) body(id string) ([]byte, error) {
	inputs := make([]oip.Tensor, len(b.m.tensors))
	for i, t := range b.m.tensors {
		inputs[i] = oip.Tensor{Name: t.name, Datatype: t.datatype, Shape: []int64{int64(b.rows()), int64(len(t.cols))}, Data: b.data[i]}
	}
	body, _, err := oip.RequestBody(oip.InferRequest{ID: id}, inputs, false)
	return body, err
}
