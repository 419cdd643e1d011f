// Command ebbrawjob is the batch-jobs benchmark's reference: the loop a
// user would write without ebb. It loads a model with ebb's own engine
// code, in process, reads a CSV input in chunks of rows, predicts each
// chunk and writes the id and the outputs of every row to a CSV output,
// then writes how long it took as JSON to -result. The benchmark runs it
// pinned to the server CPUs, as ebb's job runs there.
//
//	ebbrawjob -engine trees -model m.json -input in.csv -id patient \
//	    -columns age,sex,bmi -output out.csv -chunk 1000 -result r.json
package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/oip"
)

// Result is what -result holds.
type Result struct {
	Rows    int     `json:"rows"`
	Seconds float64 `json:"seconds"` // model load to the output's close
	Load    float64 `json:"loadSeconds"`
	Predict float64 `json:"predictSeconds"` // in Predict alone
}

type predictor interface {
	Predict(ctx context.Context, inputs []oip.Tensor) ([]oip.Tensor, error)
}

func main() {
	engine := flag.String("engine", "trees", "trees or onnx")
	model := flag.String("model", "", "model file")
	input := flag.String("input", "", "CSV input with a header")
	id := flag.String("id", "", "id column")
	columns := flag.String("columns", "", "feature columns, comma-separated, in the tensor's order")
	tensor := flag.String("tensor", "input", "input tensor name")
	output := flag.String("output", "", "CSV output")
	chunk := flag.Int("chunk", 1000, "rows per Predict call")
	result := flag.String("result", "", "where to write the timing as JSON")
	flag.Parse()
	res, err := run(*engine, *model, *input, *id, strings.Split(*columns, ","), *tensor, *output, *chunk)
	if err != nil {
		log.Fatalf("ebbrawjob: %v", err)
	}
	b, _ := json.Marshal(res)
	if err := os.WriteFile(*result, b, 0o644); err != nil {
		log.Fatalf("ebbrawjob: %v", err)
	}
}

func load(engine, path string) (predictor, error) {
	switch engine {
	case "trees":
		return trees.Load(path)
	case "onnx":
		return onnx.Load(path, onnx.Options{IntraOpThreads: runtime.GOMAXPROCS(0)})
	}
	return nil, fmt.Errorf("unknown engine %q", engine)
}

func run(engine, model, input, idCol string, cols []string, tensor, output string, chunk int) (Result, error) {
	var res Result
	start := time.Now()
	m, err := load(engine, model)
	if err != nil {
		return res, err
	}
	res.Load = time.Since(start).Seconds()
	in, err := os.Open(input)
	if err != nil {
		return res, err
	}
	defer in.Close()
	r := csv.NewReader(bufio.NewReaderSize(in, 1<<20))
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return res, fmt.Errorf("read the header: %w", err)
	}
	idx := make([]int, len(cols))
	for i, c := range cols {
		if idx[i] = slices.Index(header, c); idx[i] < 0 {
			return res, fmt.Errorf("no column %q in %v", c, header)
		}
	}
	idIdx := slices.Index(header, idCol)
	if idIdx < 0 {
		return res, fmt.Errorf("no id column %q", idCol)
	}
	out, err := os.Create(output)
	if err != nil {
		return res, err
	}
	w := bufio.NewWriterSize(out, 1<<20)
	data := make([]float32, 0, chunk*len(cols))
	ids := make([]string, 0, chunk)
	var predict time.Duration
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		t0 := time.Now()
		outs, err := m.Predict(context.Background(), []oip.Tensor{{Name: tensor, Datatype: oip.FP32,
			Shape: []int64{int64(len(ids)), int64(len(cols))}, Data: data}})
		predict += time.Since(t0)
		if err != nil {
			return err
		}
		if err := writeRows(w, ids, outs); err != nil {
			return err
		}
		res.Rows += len(ids)
		data, ids = data[:0], ids[:0]
		return nil
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, err
		}
		for _, i := range idx {
			v, err := strconv.ParseFloat(rec[i], 32)
			if err != nil {
				return res, fmt.Errorf("row %d: %w", res.Rows+len(ids)+1, err)
			}
			data = append(data, float32(v))
		}
		ids = append(ids, rec[idIdx])
		if len(ids) == chunk {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	if err := w.Flush(); err != nil {
		return res, err
	}
	if err := out.Close(); err != nil {
		return res, err
	}
	res.Seconds, res.Predict = time.Since(start).Seconds(), predict.Seconds()
	return res, nil
}

// writeRows writes each row's id and its values of every output.
func writeRows(w *bufio.Writer, ids []string, outs []oip.Tensor) error {
	per := make([]int, len(outs))
	for i, t := range outs {
		n, err := oip.Elements(t.Shape)
		if err != nil || n%len(ids) != 0 {
			return fmt.Errorf("output %s has shape %v for %d rows", t.Name, t.Shape, len(ids))
		}
		per[i] = n / len(ids)
	}
	var buf []byte
	for row, id := range ids {
		buf = append(buf[:0], id...)
		for i, t := range outs {
			for k := range per[i] {
				buf = append(buf, ',')
				buf = appendValue(buf, t.Data, row*per[i]+k)
			}
		}
		buf = append(buf, '\n')
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

func appendValue(b []byte, data any, i int) []byte {
	switch d := data.(type) {
	case []float32:
		return strconv.AppendFloat(b, float64(d[i]), 'g', -1, 32)
	case []float64:
		return strconv.AppendFloat(b, d[i], 'g', -1, 64)
	case []int64:
		return strconv.AppendInt(b, d[i], 10)
	case []int32:
		return strconv.AppendInt(b, int64(d[i]), 10)
	}
	return fmt.Appendf(b, "%v", data)
}
