package drift

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/oip"
)

// MissingValue is what a categorical feature counts when a request or an
// answer does not carry it: a value of its own, which lands in the
// profile's "(other)" bucket unless the reference saw it too.
const MissingValue = "(missing)"

// Why a record's rows could not be read; the reasons of
// ebb_drift_records_skipped_total.
var (
	errNotJSON  = errors.New("not an OIP v2 JSON body")
	errNoTensor = errors.New("no tensor matches the profile's features")
	errShape    = errors.New("tensor shape does not match the profile's features")
)

// decoder reads the features of one profile from OIP v2 JSON request and
// response bodies (CheckProfile in internal/registry states the rules):
// the tensors named after features, one feature each; else, when the body
// has exactly one tensor, its columns in the order of the features.
type decoder struct {
	in, out    side
	nNum, nCat int
}

// side is the input or the output features of a profile.
type side struct {
	names []string
	slots []slot
}

// slot is where a feature's value goes in a monitor.Row.
type slot struct {
	num bool
	idx int // in Row.Num when num, else in Row.Cat
}

func newDecoder(p *monitor.Profile) *decoder {
	d := &decoder{}
	for i := range p.Features {
		f := &p.Features[i]
		s := &d.in
		if f.Output {
			s = &d.out
		}
		var sl slot
		if f.Kind == monitor.Numeric {
			sl = slot{num: true, idx: d.nNum}
			d.nNum++
		} else {
			sl = slot{idx: d.nCat}
			d.nCat++
		}
		s.names = append(s.names, f.Name)
		s.slots = append(s.slots, sl)
	}
	return d
}

// decode returns the rows of one prediction: one per row of the request's
// batch. A feature a body does not carry is missing (NaN, or
// MissingValue). An input side that cannot be read fails the record; an
// output side that cannot be read (an error answer, a binary one) leaves
// the outputs missing and is returned as outErr.
func (d *decoder) decode(reqBody, respBody []byte) (rows []monitor.Row, outErr, err error) {
	var ins []oip.Tensor
	if len(d.in.names) > 0 {
		var req oip.InferRequest
		if err := oip.ParseRequest(reqBody, &req); err != nil {
			return nil, nil, errNotJSON
		}
		if ins, err = pick(d.in.names, req.Inputs); err != nil {
			return nil, nil, err
		}
	}
	var outs []oip.Tensor
	if len(d.out.names) > 0 {
		outs, outErr = d.outputs(respBody)
	}
	n := -1
	if len(ins) > 0 {
		n = batch(ins[0])
	} else if len(outs) > 0 {
		n = batch(outs[0])
	}
	if n <= 0 {
		return nil, outErr, errNoTensor
	}
	rows = d.newRows(n)
	if err := d.in.fill(rows, ins); err != nil {
		return nil, outErr, err
	}
	if len(outs) > 0 && batch(outs[0]) == n {
		if err := d.out.fill(rows, outs); err != nil && outErr == nil {
			outErr = err
		}
	} else if len(outs) > 0 && outErr == nil {
		outErr = fmt.Errorf("%w: the answer has %d rows, the request %d", errShape, batch(outs[0]), n)
	}
	return rows, outErr, nil
}

func (d *decoder) outputs(respBody []byte) ([]oip.Tensor, error) {
	resp, err := oip.ParseResponse(respBody, len(respBody))
	if err != nil {
		return nil, errNotJSON
	}
	ins := make([]oip.RequestInput, 0, len(resp.Outputs))
	for _, t := range resp.Outputs {
		ins = append(ins, oip.RequestInput{Name: t.Name, Shape: t.Shape, Datatype: t.Datatype})
	}
	idx, err := pickIndex(d.out.names, ins)
	if err != nil {
		return nil, err
	}
	out := make([]oip.Tensor, len(idx))
	for i, j := range idx {
		out[i] = resp.Outputs[j]
	}
	return out, nil
}

// newRows returns n rows with every value missing.
func (d *decoder) newRows(n int) []monitor.Row {
	rows := make([]monitor.Row, n)
	nums := make([]float64, n*d.nNum)
	for i := range nums {
		nums[i] = math.NaN()
	}
	cats := make([]string, n*d.nCat)
	for i := range cats {
		cats[i] = MissingValue
	}
	for i := range rows {
		rows[i].Num = nums[i*d.nNum : (i+1)*d.nNum : (i+1)*d.nNum]
		rows[i].Cat = cats[i*d.nCat : (i+1)*d.nCat : (i+1)*d.nCat]
	}
	return rows
}

// pick decodes the tensors of ins that names select (pickIndex), in the
// order pickIndex gives.
func pick(names []string, ins []oip.RequestInput) ([]oip.Tensor, error) {
	idx, err := pickIndex(names, ins)
	if err != nil {
		return nil, err
	}
	out := make([]oip.Tensor, len(idx))
	for i, j := range idx {
		t, err := oip.Decode(ins[j])
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errNotJSON, err)
		}
		out[i] = t
	}
	return out, nil
}

// pickIndex returns, for features named as tensors, the index of each
// feature's tensor (-1 for a feature no tensor is named after, dropped
// from the result: fill matches by name); else, when there is exactly one
// tensor, that one. Named features come back as a list in names' order
// with only the tensors found.
func pickIndex(names []string, ins []oip.RequestInput) ([]int, error) {
	var idx []int
	for j := range ins {
		for _, n := range names {
			if ins[j].Name == n {
				idx = append(idx, j)
				break
			}
		}
	}
	if len(idx) > 0 {
		return idx, nil
	}
	if len(ins) == 1 {
		return []int{0}, nil
	}
	return nil, errNoTensor
}

// batch is a tensor's number of rows: its first dimension (1 for a
// scalar).
func batch(t oip.Tensor) int {
	if len(t.Shape) == 0 {
		return 1
	}
	return int(t.Shape[0])
}

// width is the number of values per row of t.
func width(t oip.Tensor) int {
	w := 1
	for _, d := range t.Shape[min(1, len(t.Shape)):] {
		w *= int(d)
	}
	return w
}

// fill writes the side's features of every row from ts: by name when a
// tensor is named after a feature (its first value per row), else the one
// tensor's columns in order.
func (s *side) fill(rows []monitor.Row, ts []oip.Tensor) error {
	if len(ts) == 0 {
		return nil
	}
	n := len(rows)
	byName := false
	for _, t := range ts {
		for _, name := range s.names {
			if t.Name == name {
				byName = true
			}
		}
	}
	if !byName {
		t := ts[0]
		w := width(t)
		if w != len(s.names) || batch(t)*w != n*len(s.names) {
			return fmt.Errorf("%w: tensor %q has %d columns, the profile %d features", errShape, t.Name, w, len(s.names))
		}
		v := values(t)
		for r := range rows {
			for j, sl := range s.slots {
				v.put(&rows[r], sl, r*w+j)
			}
		}
		return nil
	}
	for _, t := range ts {
		j := -1
		for k, name := range s.names {
			if t.Name == name {
				j = k
			}
		}
		if j < 0 || batch(t) != n {
			continue
		}
		w := width(t)
		if w < 1 {
			continue
		}
		v := values(t)
		for r := range rows {
			v.put(&rows[r], s.slots[j], r*w)
		}
	}
	return nil
}

// column is a tensor's data as numbers or as strings.
type column struct {
	nums []float64
	strs []string
}

// put writes element i to row's slot, converting between numbers and
// strings as the feature's kind needs. A value too large to sum (or one
// that does not parse as a number) is missing.
func (c column) put(row *monitor.Row, sl slot, i int) {
	switch {
	case sl.num && c.nums != nil:
		if v := c.nums[i]; math.Abs(v) < 1e300 {
			row.Num[sl.idx] = v
		}
	case sl.num && c.strs != nil:
		if v, err := strconv.ParseFloat(c.strs[i], 64); err == nil && math.Abs(v) < 1e300 {
			row.Num[sl.idx] = v
		}
	case c.nums != nil:
		row.Cat[sl.idx] = strconv.FormatFloat(c.nums[i], 'g', -1, 64)
	case c.strs != nil:
		row.Cat[sl.idx] = c.strs[i]
	}
}

// values converts a decoded tensor's data.
func values(t oip.Tensor) column {
	switch d := t.Data.(type) {
	case []string:
		return column{strs: d}
	case []bool:
		out := make([]float64, len(d))
		for i, b := range d {
			if b {
				out[i] = 1
			}
		}
		return column{nums: out}
	case []float32:
		return column{nums: floats(d)}
	case []float64:
		return column{nums: d}
	case []int8:
		return column{nums: floats(d)}
	case []int16:
		return column{nums: floats(d)}
	case []int32:
		return column{nums: floats(d)}
	case []int64:
		return column{nums: floats(d)}
	case []uint8:
		return column{nums: floats(d)}
	case []uint16:
		return column{nums: floats(d)}
	case []uint32:
		return column{nums: floats(d)}
	case []uint64:
		return column{nums: floats(d)}
	case []oip.Float16:
		out := make([]float64, len(d))
		for i, h := range d {
			out[i] = float64(h.Float32())
		}
		return column{nums: out}
	case []oip.BFloat16:
		out := make([]float64, len(d))
		for i, h := range d {
			out[i] = float64(h.Float32())
		}
		return column{nums: out}
	}
	return column{}
}

func floats[T float32 | int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | uint64](d []T) []float64 {
	out := make([]float64, len(d))
	for i, v := range d {
		out[i] = float64(v)
	}
	return out
}
