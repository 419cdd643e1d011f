package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ebb-ml/ebb/internal/serving"
)

// input is a job's dataset, opened once to check its columns, count its
// rows and fix its identity; rows opens it again to read.
type input struct {
	st     *Storage
	l      loc
	format string
	m      *mapping
	info   objectInfo
	rows   int64
	// identity hashes what makes a chunk's results: the dataset (its
	// location and version), its format, the mapping and the chunk size.
	// A chunk's id carries it, so that the checkpoints of a changed
	// dataset are never taken for this one's.
	identity  string
	chunkRows int64
	// plainCSV is a CSV input without a quote, read without encoding/csv
	// (see countCSV).
	plainCSV bool
}

// openInput opens spec's dataset, checks that it has the mapped columns
// (a *SchemaError names the column and its tensor) and counts its rows.
func openInput(ctx context.Context, st *Storage, spec serving.JobSpec) (*input, error) {
	l, err := parseLoc(spec.Input.URI)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	in := &input{st: st, l: l, format: spec.Input.Format, m: newMapping(spec.Input), chunkRows: int64(max(spec.ChunkRows, 1))}
	obj, info, err := st.open(ctx, l)
	if err != nil {
		return nil, err
	}
	in.info = info
	err = in.checkColumns(obj)
	obj.Close()
	if err != nil {
		return nil, err
	}
	obj, err = in.reopen(ctx)
	if err != nil {
		return nil, err
	}
	if in.format == serving.FormatCSV {
		in.rows, in.plainCSV, err = countCSV(obj, info.size)
	} else {
		in.rows, err = countRows(in.format, obj, info.size)
	}
	obj.Close()
	if err != nil {
		return nil, fmt.Errorf("input %s: %w", l.uri, err)
	}
	mapping, _ := json.Marshal(spec.Input)
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%d\x00%s", l.uri, info.version, in.format, in.chunkRows, mapping))
	in.identity = hex.EncodeToString(sum[:8])
	return in, nil
}

// checkColumns reads the dataset's columns (a CSV header, a Parquet
// schema, a JSONL file's first row) and checks the mapped ones are there.
func (in *input) checkColumns(obj object) error {
	rr, err := openRows(in.format, obj, in.info.size, in.m.wanted)
	var se *SchemaError
	if errors.As(err, &se) {
		se.Tensor = in.m.tensorOf(se.Column)
		return fmt.Errorf("input %s: %w", in.l.uri, se)
	}
	if err != nil {
		return fmt.Errorf("input %s: %w", in.l.uri, err)
	}
	if in.format != serving.FormatJSONL {
		return nil
	}
	row := make([]cell, len(in.m.wanted))
	switch err := rr.next(row); {
	case err == io.EOF:
		return nil
	case err != nil:
		return fmt.Errorf("input %s: %w", in.l.uri, err)
	}
	for i, c := range row {
		if c.kind == cellMissing {
			col := in.m.wanted[i]
			return fmt.Errorf("input %s: %w", in.l.uri, &SchemaError{Column: col, Tensor: in.m.tensorOf(col), Have: nil})
		}
	}
	return nil
}

// reopen opens the dataset again, refusing one that changed since it
// was first opened.
func (in *input) reopen(ctx context.Context) (object, error) {
	obj, info, err := in.st.open(ctx, in.l)
	if err != nil {
		return nil, err
	}
	if info.version != in.info.version {
		obj.Close()
		return nil, fmt.Errorf("input %s changed while the job ran: its chunks' results would mix two datasets", in.l.uri)
	}
	return obj, nil
}

// rowsOf returns a reader of the rows of obj, the dataset reopened.
func (in *input) rowsOf(obj object) (rowReader, error) {
	if in.plainCSV {
		return newPlainCSVRows(obj, in.m.wanted)
	}
	return openRows(in.format, obj, in.info.size, in.m.wanted)
}

// chunks is the number of chunks of the dataset.
func (in *input) chunks() int64 { return (in.rows + in.chunkRows - 1) / in.chunkRows }

// chunkID names chunk i of this dataset.
func (in *input) chunkID(i int64) string { return fmt.Sprintf("%s-%06d", in.identity, i) }

// chunkRowsOf is the number of rows of chunk i.
func (in *input) chunkRowsOf(i int64) int64 {
	return min(in.chunkRows, in.rows-i*in.chunkRows)
}
