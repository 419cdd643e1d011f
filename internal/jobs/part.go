package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// A part holds the results of one chunk, as JSON lines: a header line
// (partHeader) that names the id field and the outputs with their
// datatypes, then one object per good input row, in input order:
//
//	{"ebbPart":1,"id":"row","idText":false,"outputs":[{"name":"predict","datatype":"FP64","width":1}]}
//	{"row":0,"predict":151.2}
//	{"row":1,"predict":75.9}
//
// An output of width 1 is a number (or string, or boolean); wider ones are
// arrays. NaN and the infinities, which JSON lacks, are null. The lines
// after the header are the final output's lines for format jsonl; parquet
// outputs are converted from them (output.go).
//
// A job whose output is CSV writes its parts as CSV records instead
// (version 2, "format":"csv"): after the same header, the output's own
// lines, which the output copies (columns as columnNames says, a value
// as in JSON but null empty, fields quoted as encoding/csv quotes them):
//
//	{"ebbPart":2,"format":"csv","id":"row","idText":false,"outputs":[...]}
//	0,151.2
//	1,75.9
//
// Parts of version 1 stay readable for every format.

// partHeader is the first line of a part.
type partHeader struct {
	Part    int         `json:"ebbPart"`
	Format  string      `json:"format,omitempty"` // "csv" in version 2
	ID      string      `json:"id"`
	IDText  bool        `json:"idText"`
	Outputs []outColumn `json:"outputs"`
}

// outColumn is one output tensor of a chunk's response.
type outColumn struct {
	Name     string `json:"name"`
	Datatype string `json:"datatype"`
	// Width is the elements per row: 1 for shape [rows] or [rows, 1].
	Width int `json:"width"`
	vals  values
}

// values are a tensor's elements in one of five Go forms.
type values struct {
	f    []float64
	bits int // of the floats: 32 for FP32 and smaller, 64 for FP64
	i    []int64
	u    []uint64
	b    []bool
	s    []string
	n    int
}

// valuesOf normalizes OIP tensor data.
func valuesOf(data any) (values, error) {
	var v values
	floats := func(n int, at func(int) float64, bits int) {
		v.f, v.bits = make([]float64, n), bits
		for k := range n {
			v.f[k] = at(k)
		}
	}
	ints := func(n int, at func(int) int64) {
		v.i = make([]int64, n)
		for k := range n {
			v.i[k] = at(k)
		}
	}
	switch d := data.(type) {
	case []float64:
		v.f, v.bits = d, 64
	case []float32:
		floats(len(d), func(k int) float64 { return float64(d[k]) }, 32)
	case []oip.Float16:
		floats(len(d), func(k int) float64 { return float64(d[k].Float32()) }, 32)
	case []oip.BFloat16:
		floats(len(d), func(k int) float64 { return float64(d[k].Float32()) }, 32)
	case []int64:
		v.i = d
	case []int32:
		ints(len(d), func(k int) int64 { return int64(d[k]) })
	case []int16:
		ints(len(d), func(k int) int64 { return int64(d[k]) })
	case []int8:
		ints(len(d), func(k int) int64 { return int64(d[k]) })
	case []uint8:
		ints(len(d), func(k int) int64 { return int64(d[k]) })
	case []uint16:
		ints(len(d), func(k int) int64 { return int64(d[k]) })
	case []uint32:
		ints(len(d), func(k int) int64 { return int64(d[k]) })
	case []uint64:
		v.u = d
	case []bool:
		v.b = d
	case []string:
		v.s = d
	default:
		return v, fmt.Errorf("tensor data of type %T", data)
	}
	v.n = len(v.f) + len(v.i) + len(v.u) + len(v.b) + len(v.s)
	return v, nil
}

// appendJSON appends element k as JSON.
func (v *values) appendJSON(b []byte, k int) []byte {
	switch {
	case v.f != nil:
		f := v.f[k]
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return append(b, "null"...)
		}
		return strconv.AppendFloat(b, f, 'g', -1, v.bits)
	case v.i != nil:
		return strconv.AppendInt(b, v.i[k], 10)
	case v.u != nil:
		return strconv.AppendUint(b, v.u[k], 10)
	case v.b != nil:
		return strconv.AppendBool(b, v.b[k])
	}
	return appendJSONString(b, v.s[k])
}

// appendJSONString appends s as json.Marshal writes it: plain text as it
// is, quoted, without a call to json.Marshal for it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// decodeResponse reads an infer response for rows rows into its output
// columns; every output must have rows as its first dimension.
func decodeResponse(msg Message, rows int) ([]outColumn, error) {
	n := msg.HeaderLength
	if n <= 0 || n > len(msg.Body) {
		n = jsonLength(msg.Body)
	}
	resp, err := oip.ParseResponse(msg.Body, n)
	if err != nil {
		return nil, err
	}
	if len(resp.Outputs) == 0 {
		return nil, fmt.Errorf("the response has no outputs")
	}
	out := make([]outColumn, len(resp.Outputs))
	for i, t := range resp.Outputs {
		v, err := valuesOf(t.Data)
		if err != nil {
			return nil, fmt.Errorf("output %q: %v", t.Name, err)
		}
		if rows == 0 || len(t.Shape) == 0 || t.Shape[0] != int64(rows) || v.n%rows != 0 {
			return nil, fmt.Errorf("output %q has shape %v for %d rows: a job needs one result per row (shape [rows, ...])", t.Name, t.Shape, rows)
		}
		out[i] = outColumn{Name: t.Name, Datatype: t.Datatype, Width: v.n / rows, vals: v}
	}
	return out, nil
}

// jsonLength is the length of the JSON value at the start of body: all of
// body when it is JSON alone, less when binary tensor data follows. A
// body that does not start with a JSON value is all taken for JSON, for
// its parser to say what is wrong with it.
func jsonLength(body []byte) int {
	d := json.NewDecoder(bytes.NewReader(body))
	var v json.RawMessage
	if err := d.Decode(&v); err != nil {
		return len(body)
	}
	n := int(d.InputOffset())
	if len(bytes.TrimSpace(body[n:])) == 0 {
		return len(body)
	}
	return n
}

// encodePart writes a chunk's part: the header, then a line per id, as
// CSV records for a CSV output (format), else as JSON objects.
func encodePart(m *mapping, ids []outID, outs []outColumn, format string) ([]byte, error) {
	if format == serving.FormatCSV {
		return encodeCSVPart(m, ids, outs)
	}
	h := partHeader{Part: 1, ID: m.idName, IDText: m.idIndex >= 0, Outputs: outs}
	head, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(len(head) + len(ids)*(24+16*len(outs)))
	buf.Write(head)
	buf.WriteByte('\n')
	idKey, _ := json.Marshal(m.idName)
	keys := make([][]byte, len(outs))
	for i, o := range outs {
		keys[i], _ = json.Marshal(o.Name)
	}
	line := make([]byte, 0, 256)
	for r, id := range ids {
		line = append(line[:0], '{')
		line = append(line, idKey...)
		line = append(line, ':')
		if h.IDText {
			line = appendJSONString(line, id.text)
		} else {
			line = strconv.AppendInt(line, id.row, 10)
		}
		for i, o := range outs {
			line = append(line, ',')
			line = append(line, keys[i]...)
			line = append(line, ':')
			if o.Width == 1 {
				line = o.vals.appendJSON(line, r)
				continue
			}
			line = append(line, '[')
			for k := range o.Width {
				if k > 0 {
					line = append(line, ',')
				}
				line = o.vals.appendJSON(line, r*o.Width+k)
			}
			line = append(line, ']')
		}
		line = append(line, '}', '\n')
		buf.Write(line)
	}
	return buf.Bytes(), nil
}

// encodeCSVPart writes a part of version 2: the header, then a CSV record
// per id.
func encodeCSVPart(m *mapping, ids []outID, outs []outColumn) ([]byte, error) {
	h := partHeader{Part: 2, Format: serving.FormatCSV, ID: m.idName, IDText: m.idIndex >= 0, Outputs: outs}
	head, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(head)+1+len(ids)*(12+12*len(outs)))
	b = append(append(b, head...), '\n')
	for r, id := range ids {
		if h.IDText {
			b = appendCSVField(b, []byte(id.text))
		} else {
			b = append(strconv.AppendInt(b, id.row, 10), ',')
		}
		for _, o := range outs {
			for k := range o.Width {
				b = o.vals.appendCSV(b, r*o.Width+k)
			}
		}
		b[len(b)-1] = '\n' // the last field's comma
	}
	return b, nil
}

// appendCSV appends element k as a CSV field and a comma: as appendJSON
// writes it, but NaN and the infinities empty (JSON's null) and a string
// as its text.
func (v *values) appendCSV(b []byte, k int) []byte {
	switch {
	case v.f != nil:
		f := v.f[k]
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return append(b, ',')
		}
		return append(strconv.AppendFloat(b, f, 'g', -1, v.bits), ',')
	case v.s != nil:
		return appendCSVField(b, []byte(v.s[k]))
	}
	return append(v.appendJSON(b, k), ',')
}
