package drift

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ebb-ml/ebb/internal/monitor"
)

// Sample formats.
const (
	FormatCSV   = "csv"
	FormatJSONL = "jsonl"
)

// DefaultMaxSampleRows is how many rows of a sample a profile is built
// from when SampleOptions.MaxRows is 0.
const DefaultMaxSampleRows = 1_000_000

// SampleOptions say how to read a sample of training data into a
// reference profile.
type SampleOptions struct {
	// Format is FormatCSV or FormatJSONL; SampleFormat guesses it from a
	// file name.
	Format string
	// Outputs name the columns that are model outputs (a label or a
	// prediction) rather than inputs.
	Outputs []string
	// Categorical name the columns to bin by value even when every value
	// is a number (class codes); the others are numeric when every value
	// is a number, else categorical.
	Categorical []string
	// Ignore name the columns to leave out (an id, a timestamp).
	Ignore []string
	// MaxRows is the most rows read; the rest of the file is left out.
	// 0 means DefaultMaxSampleRows.
	MaxRows int
	Profile monitor.ProfileOptions
}

// SampleFormat returns the format of a sample file by its extension:
// .csv, or .jsonl / .ndjson / .json (one object per line); "" when
// neither.
func SampleFormat(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return FormatCSV
	case ".jsonl", ".ndjson", ".json":
		return FormatJSONL
	}
	return ""
}

// cell is one value of a sample: a number, or a string.
type cell struct {
	num   float64
	str   string
	isStr bool
	null  bool
}

// ReadSample reads a sample, a CSV file with a header or JSON lines of
// flat objects, and builds its reference profile: one feature per column,
// in the file's column order (the order the monitor reads one input
// tensor's columns in), outputs marked.
func ReadSample(r io.Reader, opts SampleOptions) (*monitor.Profile, error) {
	maxRows := opts.MaxRows
	if maxRows <= 0 {
		maxRows = DefaultMaxSampleRows
	}
	var (
		names []string
		cols  [][]cell
		err   error
	)
	switch opts.Format {
	case FormatCSV:
		names, cols, err = readCSV(r, maxRows)
	case FormatJSONL:
		names, cols, err = readJSONL(r, maxRows)
	default:
		return nil, fmt.Errorf("unknown sample format %q: use %s (with a header) or %s (one JSON object per line)", opts.Format, FormatCSV, FormatJSONL)
	}
	if err != nil {
		return nil, err
	}
	for _, list := range [][]string{opts.Outputs, opts.Categorical, opts.Ignore} {
		for _, n := range list {
			if !slices.Contains(names, n) {
				return nil, fmt.Errorf("the sample has no column %q; its columns are %s", n, strings.Join(names, ", "))
			}
		}
	}
	var specs []monitor.Spec
	var keep []int
	for i, n := range names {
		if slices.Contains(opts.Ignore, n) {
			continue
		}
		kind := monitor.Numeric
		if slices.Contains(opts.Categorical, n) || hasString(cols[i]) {
			kind = monitor.Categorical
		}
		specs = append(specs, monitor.Spec{Name: n, Kind: kind, Output: slices.Contains(opts.Outputs, n)})
		keep = append(keep, i)
	}
	if len(specs) == 0 {
		return nil, errors.New("the sample has no column to profile")
	}
	nRows := 0
	if len(cols) > 0 {
		nRows = len(cols[0])
	}
	if nRows == 0 {
		return nil, errors.New("the sample has no rows")
	}
	rows := make([]monitor.Row, nRows)
	for r := range rows {
		for j, i := range keep {
			c := cols[i][r]
			if specs[j].Kind == monitor.Numeric {
				v := c.num
				if c.null {
					v = math.NaN()
				}
				rows[r].Num = append(rows[r].Num, v)
				continue
			}
			switch {
			case c.null:
				rows[r].Cat = append(rows[r].Cat, MissingValue)
			case c.isStr:
				rows[r].Cat = append(rows[r].Cat, c.str)
			default:
				rows[r].Cat = append(rows[r].Cat, strconv.FormatFloat(c.num, 'g', -1, 64))
			}
		}
	}
	return monitor.BuildProfile(specs, rows, opts.Profile)
}

func hasString(col []cell) bool {
	for _, c := range col {
		if c.isStr {
			return true
		}
	}
	return false
}

func readCSV(r io.Reader, maxRows int) ([]string, [][]cell, error) {
	cr := csv.NewReader(bufio.NewReader(r))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, nil, errors.New("the CSV sample is empty: it needs a header and rows")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("CSV sample: %w", err)
	}
	names := slices.Clone(header)
	if err := checkNames(names); err != nil {
		return nil, nil, err
	}
	cols := make([][]cell, len(names))
	for n := 0; n < maxRows; n++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("CSV sample: %w", err)
		}
		for i, s := range rec {
			cols[i] = append(cols[i], parseCell(s))
		}
	}
	return names, cols, nil
}

func parseCell(s string) cell {
	t := strings.TrimSpace(s)
	if t == "" || strings.EqualFold(t, "nan") || strings.EqualFold(t, "null") || strings.EqualFold(t, "na") {
		return cell{null: true}
	}
	if v, err := strconv.ParseFloat(t, 64); err == nil && !math.IsInf(v, 0) {
		return cell{num: v}
	}
	return cell{str: s, isStr: true}
}

func checkNames(names []string) error {
	seen := map[string]bool{}
	for i, n := range names {
		switch {
		case n == "":
			return fmt.Errorf("column %d of the sample has no name", i+1)
		case seen[n]:
			return fmt.Errorf("column %q is in the sample twice", n)
		}
		seen[n] = true
	}
	return nil
}

func readJSONL(r io.Reader, maxRows int) ([]string, [][]cell, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var names []string
	index := map[string]int{}
	var cols [][]cell
	line, rows := 0, 0
	for rows < maxRows && sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil {
			return nil, nil, fmt.Errorf("JSONL sample, line %d: not a JSON object: %w", line, err)
		}
		// New columns in the order the line has them.
		dec := json.NewDecoder(bytes.NewReader(b))
		keys, err := objectKeys(dec)
		if err != nil {
			return nil, nil, fmt.Errorf("JSONL sample, line %d: %w", line, err)
		}
		for _, k := range keys {
			if _, ok := index[k]; !ok {
				index[k] = len(names)
				names = append(names, k)
				cols = append(cols, make([]cell, rows)) // missing in earlier rows
				for i := range cols[len(cols)-1] {
					cols[len(cols)-1][i] = cell{null: true}
				}
			}
		}
		for i := range cols {
			cols[i] = append(cols[i], cell{null: true})
		}
		for k, raw := range obj {
			c, err := jsonCell(raw)
			if err != nil {
				return nil, nil, fmt.Errorf("JSONL sample, line %d, %q: %w", line, k, err)
			}
			cols[index[k]][rows] = c
		}
		rows++
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("JSONL sample: %w", err)
	}
	if len(names) == 0 {
		return nil, nil, errors.New("the JSONL sample is empty: it needs one JSON object per line")
	}
	return names, cols, nil
}

// objectKeys returns the keys of the JSON object dec reads, in order.
func objectKeys(dec *json.Decoder) ([]string, error) {
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, t.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

func jsonCell(raw json.RawMessage) (cell, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return cell{}, err
	}
	switch x := v.(type) {
	case nil:
		return cell{null: true}, nil
	case float64:
		return cell{num: x}, nil
	case bool:
		if x {
			return cell{num: 1}, nil
		}
		return cell{num: 0}, nil
	case string:
		return cell{str: x, isStr: true}, nil
	}
	return cell{}, errors.New("a value must be a number, a string, a boolean or null: give one column per feature")
}
