package jobs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// TestBatchRequest checks a chunk's request: binary tensor data of every
// datatype a mapping takes, decoded by the replica's reader as the values
// of the rows, and binary outputs asked for.
func TestBatchRequest(t *testing.T) {
	m := newMapping(serving.JobInput{IDColumn: "id", Columns: []serving.TensorColumns{
		{Tensor: "f32", Columns: []string{"a", "b"}},
		{Tensor: "f64", Datatype: oip.FP64, Columns: []string{"a"}},
		{Tensor: "i32", Datatype: oip.INT32, Columns: []string{"c"}},
		{Tensor: "i64", Datatype: oip.INT64, Columns: []string{"c"}},
		{Tensor: "b", Datatype: oip.BOOL, Columns: []string{"d"}},
		{Tensor: "s", Datatype: oip.BYTES, Columns: []string{"id"}},
	}})
	text := func(s string) cell { return cell{kind: cellText, text: s} }
	b := newBatch(m, 2)
	rows := [][]cell{ // a, b, c, d, id
		{text("1.5"), text(" 0.1 "), text("7"), text("true"), text("x")},
		{{kind: cellFloat, num: 2}, {kind: cellInt, i: 3}, {kind: cellInt, i: -4}, {kind: cellBool}, text("y")},
	}
	for i, r := range rows {
		if err := b.add(int64(i), r); err != nil {
			t.Fatal(err)
		}
	}
	msg, err := b.request("chunk-1")
	if err != nil {
		t.Fatal(err)
	}
	if msg.HeaderLength <= 0 || msg.HeaderLength >= len(msg.Body) {
		t.Fatalf("header length %d of a %d-byte body; want binary data after the JSON", msg.HeaderLength, len(msg.Body))
	}
	req, got, err := replicaRequest(msg)
	if err != nil {
		t.Fatal(err)
	}
	if req.ID != "chunk-1" || req.Parameters[oip.ParamBinaryDataOutput] != true {
		t.Errorf("request id %q, parameters %v; want chunk-1 and binary outputs", req.ID, req.Parameters)
	}
	want := []oip.Tensor{
		{Name: "f32", Datatype: oip.FP32, Shape: []int64{2, 2}, Data: []float32{1.5, 0.1, 2, 3}},
		{Name: "f64", Datatype: oip.FP64, Shape: []int64{2, 1}, Data: []float64{1.5, 2}},
		{Name: "i32", Datatype: oip.INT32, Shape: []int64{2, 1}, Data: []int32{7, -4}},
		{Name: "i64", Datatype: oip.INT64, Shape: []int64{2, 1}, Data: []int64{7, -4}},
		{Name: "b", Datatype: oip.BOOL, Shape: []int64{2, 1}, Data: []bool{true, false}},
		{Name: "s", Datatype: oip.BYTES, Shape: []int64{2, 1}, Data: []string{"x", "y"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tensors (-want +got):\n%s", diff)
	}
}

// TestBatchAddBad checks that a row with a value that does not fit leaves
// every tensor of the batch as it was.
func TestBatchAddBad(t *testing.T) {
	m := newMapping(serving.JobInput{Columns: []serving.TensorColumns{
		{Tensor: "x", Columns: []string{"a", "b"}},
		{Tensor: "n", Datatype: oip.INT32, Columns: []string{"c"}},
	}})
	text := func(s string) cell { return cell{kind: cellText, text: s} }
	for _, tt := range []struct {
		name string
		row  []cell
		msg  string
	}{
		{"first tensor", []cell{text("1"), text("no"), text("1")}, `row 1: column "b" (tensor "x", FP32): "no" is not a number`},
		{"second tensor", []cell{text("1"), text("2"), text("1.5")}, `row 1: column "c" (tensor "n", INT32): "1.5" is not an integer`},
		{"range", []cell{text("1"), text("2"), text("3000000000")}, `row 1: column "c" (tensor "n", INT32): 3000000000 is out of the range of INT32`},
		{"missing", []cell{text("1"), {kind: cellMissing}, text("1")}, `row 1: column "b" (tensor "x", FP32): no value: the row lacks the column`},
		{"null", []cell{{kind: cellNull}, text("2"), text("1")}, `row 1: column "a" (tensor "x", FP32): no value: null`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := newBatch(m, 2)
			if err := b.add(0, []cell{text("5"), text("6"), text("7")}); err != nil {
				t.Fatal(err)
			}
			err := b.add(1, tt.row)
			if err == nil || err.Error() != tt.msg {
				t.Errorf("add: %v; want %s", err, tt.msg)
			}
			if b.rows() != 1 || !cmp.Equal(b.cols[0].f32, []float32{5, 6}) || !cmp.Equal(b.cols[1].i32, []int32{7}) {
				t.Errorf("after a bad row: %d rows, %v %v; want the first row alone", b.rows(), b.cols[0].f32, b.cols[1].i32)
			}
		})
	}
}

// TestDecodeResponse checks responses in JSON and with binary outputs,
// with their header length and without it (the runner finds it).
func TestDecodeResponse(t *testing.T) {
	outs := []oip.Tensor{
		{Name: "y", Datatype: oip.FP32, Shape: []int64{2}, Data: []float32{1.25, -3}},
		{Name: "p", Datatype: oip.INT64, Shape: []int64{2, 2}, Data: []int64{1, 2, 3, 4}},
	}
	jsonBody, _, err := oip.AppendResponse(nil, &oip.InferResponse{ModelName: "m", Outputs: outs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	binBody, n, err := oip.AppendResponse(nil, &oip.InferResponse{ModelName: "m", Outputs: outs}, []bool{true, true})
	if err != nil {
		t.Fatal(err)
	}
	want := []outColumn{
		{Name: "y", Datatype: oip.FP32, Width: 1, vals: values{f: []float64{1.25, -3}, bits: 32, n: 2}},
		{Name: "p", Datatype: oip.INT64, Width: 2, vals: values{i: []int64{1, 2, 3, 4}, n: 4}},
	}
	for _, tt := range []struct {
		name string
		msg  Message
	}{
		{"json", Message{Body: jsonBody}},
		{"json with a newline", Message{Body: append(bytes.Clone(jsonBody), '\n')}},
		{"binary", Message{Body: binBody, HeaderLength: n}},
		{"binary, length unknown", Message{Body: binBody}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeResponse(tt.msg, 2)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(outColumn{}, values{})); diff != "" {
				t.Errorf("outputs (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := decodeResponse(Message{Body: []byte("not json")}, 2); err == nil {
		t.Errorf("a body that is not JSON decoded")
	}
}

// TestCountRows checks the count of CSV records against encoding/csv's.
func TestCountRows(t *testing.T) {
	for _, text := range []string{
		"",
		"h\n",
		"h",
		"h\na\nb\n",
		"h\na\nb",
		"h\r\na\r\nb\r\n",
		"h\n\na\n\n\nb\n\n",
		"h\r\n\r\na\r\n",
		"h\n \n",
		"h\n\r\n\r",
		"h\na\r",
		"h,x\n1,\"two\nlines\"\n3,4\n",
		"h\n\"\"\n",
	} {
		t.Run(strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(text), func(t *testing.T) {
			r := csv.NewReader(strings.NewReader(text))
			r.FieldsPerRecord = -1
			recs, err := r.ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			want := int64(max(len(recs)-1, 0))
			got, _, err := countCSV(nopCloser{strings.NewReader(text)}, int64(len(text)))
			if err != nil || got != want {
				t.Errorf("countRows: %d, %v; want %d", got, err, want)
			}
		})
	}
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

// TestSplitter checks the split of part lines, encodePart's by the fast
// path and others by decoding, against the decoded values.
func TestSplitter(t *testing.T) {
	h := partHeader{Part: 1, ID: "id", IDText: true, Outputs: []outColumn{
		{Name: "y", Datatype: oip.FP64, Width: 1},
		{Name: "pair", Datatype: oip.FP32, Width: 2},
	}}
	sp := newSplitter(h)
	for _, tt := range []struct {
		name, line string
		want       []string
		fast       bool
	}{
		{"numbers", `{"id":"a","y":1.5,"pair":[1,-2e-7]}`, []string{`"a"`, `1.5`, `1`, `-2e-7`}, true},
		{"nulls", `{"id":"a","y":null,"pair":[null,true]}`, []string{`"a"`, `null`, `null`, `true`}, true},
		{"escapes", `{"id":"a\"b,]}\\","y":2,"pair":[3,4]}`, []string{`"a\"b,]}\\"`, `2`, `3`, `4`}, true},
		{"other order", `{"y":2,"id":"a","pair":[3,4]}`, []string{`"a"`, `2`, `3`, `4`}, false},
		{"spaces", `{"id": "a", "y": 2, "pair": [3, 4]}`, []string{`"a"`, `2`, `3`, `4`}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, fast := sp.fast([]byte(tt.line), nil)
			if fast != tt.fast {
				t.Errorf("fast path %v; want %v", fast, tt.fast)
			}
			got, err := sp.split([]byte(tt.line), nil)
			if err != nil {
				t.Fatal(err)
			}
			var gs []string
			for _, v := range got {
				gs = append(gs, string(v))
			}
			if diff := cmp.Diff(tt.want, gs); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
		})
	}
	for _, bad := range []string{`{"id":"a","y":1,"pair":[1]}`, `{"id":"a"`, `not json`} {
		if _, err := sp.split([]byte(bad), nil); err == nil {
			t.Errorf("split(%s): no error", bad)
		}
	}
}

// TestCSVSink checks the CSV output against encoding/csv's Writer.
func TestCSVSink(t *testing.T) {
	h := partHeader{Part: 1, ID: "id", IDText: true, Outputs: []outColumn{{Name: "y", Datatype: oip.FP32, Width: 1}, {Name: "v", Datatype: oip.BYTES, Width: 2}}}
	ids := []string{"plain", "a,b", `say "hi"`, " lead", `\.`, "two\nlines", "", "é\u00a0x", `back\slash`}
	var part bytes.Buffer
	var want bytes.Buffer
	cw := csv.NewWriter(&want)
	cw.Write([]string{"id", "y", "v_0", "v_1"})
	for i, id := range ids {
		q, _ := json.Marshal(id)
		part.WriteString(`{"id":` + string(q) + `,"y":` + []string{"1.5", "null", "-2"}[i%3] + `,"v":[` + string(q) + `,"x"]}` + "\n")
		cw.Write([]string{id, []string{"1.5", "", "-2"}[i%3], id, "x"})
	}
	cw.Flush()
	var got bytes.Buffer
	s, err := newCSVSink(&got, h)
	if err != nil {
		t.Fatal(err)
	}
	for {
		l, err := readLineOf(&part)
		if err == io.EOF {
			break
		}
		if err := s.line(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.String(), got.String()); diff != "" {
		t.Errorf("CSV (-encoding/csv +sink):\n%s", diff)
	}
}

func readLineOf(b *bytes.Buffer) ([]byte, error) {
	l, err := b.ReadBytes('\n')
	if err != nil {
		return nil, io.EOF
	}
	return l[:len(l)-1], nil
}

// TestAppendJSONString checks the quoting of ids and strings in parts
// against json.Marshal's.
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "r000123", "a b", `q"uote`, `back\slash`, "tab\t", "<b>&", "é", "\u2028", "\xff"} {
		want, _ := json.Marshal(s)
		if got := appendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("appendJSONString(%q) = %s; want x%s", s, got, want)
		}
	}
}

// TestReadLine checks lines longer than the reader's buffer, and a last
// line without its newline.
func TestReadLine(t *testing.T) {
	long := strings.Repeat("x", 100)
	r := bufio.NewReaderSize(strings.NewReader("a\n"+long+"\n\nend"), 16)
	var got []string
	for {
		l, err := readLine(r)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(l))
	}
	if diff := cmp.Diff([]string{"a", long, "", "end"}, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

// TestPlainCSVRows checks the reader of quote-free CSV against
// encoding/csv's records, and that an input with a quote goes to
// encoding/csv.
func TestPlainCSVRows(t *testing.T) {
	for _, tt := range []struct {
		name, text string
		plain      bool
	}{
		{"plain", "id,a,b\nr1,1,2\nr2,3,4\n", true},
		{"crlf and blanks", "id,a,b\r\n\r\nr1,1,2\r\n\nr2, 3 ,\r\n", true},
		{"no final newline, cr", "id,a,b\nr1,1,2\nr2,3\r", true},
		{"short and long rows", "id,a,b\nr1\nr2,1,2,3,4\na\rb,5,6\n", true},
		{"bom", "\uFEFFid,a,b\nr1,1,2\n", true},
		{"quotes", "id,a,b\n\"r,1\",1,2\n\"r\n2\",3,4\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			obj := nopCloser{strings.NewReader(tt.text)}
			n, plain, err := countCSV(obj, int64(len(tt.text)))
			if err != nil || plain != tt.plain {
				t.Fatalf("countCSV: %d, plain %v, %v; want plain %v", n, plain, err, tt.plain)
			}
			wanted := []string{"id", "b"}
			read := func(rr rowReader) [][]cell {
				var rows [][]cell
				for {
					row := make([]cell, len(wanted))
					if err := rr.next(row); err == io.EOF {
						return rows
					} else if err != nil {
						t.Fatal(err)
					}
					rows = append(rows, row)
				}
			}
			csvr, err := newCSVRows(strings.NewReader(tt.text), wanted)
			if err != nil {
				t.Fatal(err)
			}
			want := read(csvr)
			if int64(len(want)) != n {
				t.Errorf("countCSV: %d rows; encoding/csv reads %d", n, len(want))
			}
			if !tt.plain {
				return
			}
			pr, err := newPlainCSVRows(strings.NewReader(tt.text), wanted)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, read(pr), cmp.AllowUnexported(cell{})); diff != "" {
				t.Errorf("rows (-encoding/csv +plain):\n%s", diff)
			}
		})
	}
}

// TestCSVParts checks that a CSV output assembled from CSV parts (version
// 2) is the one assembled from JSON parts (version 1), for parts of
// either version mixed, as after an upgrade during a job.
func TestCSVParts(t *testing.T) {
	m := newMapping(serving.JobInput{IDColumn: "id", Columns: []serving.TensorColumns{{Tensor: "x", Columns: []string{"a"}}}})
	ids := []outID{{text: "plain"}, {text: `a,"b"`}, {text: " lead"}, {text: "two\n\nlines"}}
	nan := float32(math.NaN())
	outs := func() []outColumn {
		var cols []outColumn
		for _, o := range []oip.Tensor{
			{Name: "y", Datatype: oip.FP32, Data: []float32{1.5, nan, float32(math.Inf(1)), -2e-7}},
			{Name: "label", Datatype: oip.BYTES, Data: []string{"x", "y,z", `q"`, ""}},
			{Name: "pair", Datatype: oip.INT64, Data: []int64{1, 2, 3, 4, 5, 6, 7, 8}},
			{Name: "ok", Datatype: oip.BOOL, Data: []bool{true, false, true, false}},
		} {
			v, err := valuesOf(o.Data)
			if err != nil {
				t.Fatal(err)
			}
			cols = append(cols, outColumn{Name: o.Name, Datatype: o.Datatype, Width: v.n / len(ids), vals: v})
		}
		return cols
	}()
	st := &Storage{}
	assemble := func(formats ...string) string {
		t.Helper()
		dir := t.TempDir()
		out, err := parseLoc(filepath.Join(dir, "out.csv"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		frames := map[string]frameAt{}
		w := st.partsWriter(out)
		defer w.close()
		for i, f := range formats {
			part, err := encodePart(m, ids, outs, f)
			if err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("chunk-%d", i)
			if frames[name], err = w.append(name, part); err != nil {
				t.Fatal(err)
			}
			names = append(names, name)
		}
		if err := w.sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := st.assemble(context.Background(), out, serving.FormatCSV, names, frames); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out.uri)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	want := assemble(serving.FormatJSONL, serving.FormatJSONL)
	if !strings.Contains(want, "\"a,\"\"b\"\"\",,\"y,z\",3,4,false\n") {
		t.Errorf("the JSON parts' CSV lacks the NaN row:\n%s", want)
	}
	for _, formats := range [][]string{{serving.FormatCSV, serving.FormatCSV}, {serving.FormatJSONL, serving.FormatCSV}, {serving.FormatCSV, serving.FormatJSONL}} {
		if diff := cmp.Diff(want, assemble(formats...)); diff != "" {
			t.Errorf("parts %v: CSV (-from JSON parts +got):\n%s", formats, diff)
		}
	}
}
