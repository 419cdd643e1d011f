package jobs

import (
	"encoding/csv"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// TestPlainCSVBorrowed reads a plain CSV input many times the reader's
// buffer into one batch, as the producer does: the fields are the
// reader's buffer, reused as it reads on, so the text a batch keeps (ids,
// BYTES tensors) must be copies, and the numbers parsed at once. The
// rows go straight into the batch (nextInto) when its tensors are all
// FP32, through cells (add) when not, or when the fast path refuses a
// row: the batches are the same either way, bad rows refused alike.
func TestPlainCSVBorrowed(t *testing.T) {
	const rows = 20_000 // about 700 KB: the buffer's 64 KiB ten times over
	var in strings.Builder
	in.WriteString("id,label,x,y\n")
	for i := range rows {
		y := strconv.Itoa(i) + ".25"
		switch i % 1000 {
		case 7:
			y = " 7.5" // a space: add trims it
		case 8:
			y = "1e39" // beyond FP32: +Inf, as add makes it
		case 9:
			y = "0x1p-2" // strconv's syntax
		case 10:
			y = "oops" // a bad row
		}
		fmt.Fprintf(&in, "id-%06d,label-%06d,%d.5,%s\n", i, i, i, y)
	}
	in.WriteString("id-short,label\n") // a short row: add says what is missing
	for _, tt := range []struct {
		name    string
		columns []serving.TensorColumns
		floats  bool
	}{
		{"FP32 only", []serving.TensorColumns{{Tensor: "x", Columns: []string{"x", "y"}}}, true},
		{"with BYTES", []serving.TensorColumns{{Tensor: "label", Datatype: oip.BYTES, Columns: []string{"label"}}, {Tensor: "x", Columns: []string{"x", "y"}}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := newMapping(serving.JobInput{IDColumn: "id", Columns: tt.columns})
			read := func(fast bool) (*batch, []string) {
				rr, err := newPlainCSVRows(strings.NewReader(in.String()), m.wanted)
				if err != nil {
					t.Fatal(err)
				}
				b := newBatch(m, rows)
				b.borrowed = true
				if b.floats != tt.floats {
					t.Fatalf("batch.floats = %v; want %v", b.floats, tt.floats)
				}
				var bad []string
				row := make([]cell, len(m.wanted))
				for i := range rows + 1 {
					var added bool
					if fast {
						added, err = rr.nextInto(b, int64(i), row)
					} else {
						err = rr.next(row)
					}
					if err != nil {
						t.Fatalf("row %d: %v", i, err)
					}
					if !added {
						if err := b.add(int64(i), row); err != nil {
							bad = append(bad, err.Error())
						}
					}
				}
				return b, bad
			}
			want, wantBad := read(false)
			got, gotBad := read(true)
			if len(got.ids) != rows-rows/1000 || len(want.ids) != len(got.ids) {
				t.Fatalf("%d rows read (%d through cells); want %d", len(got.ids), len(want.ids), rows-rows/1000)
			}
			var good []int // the rows not bad
			for i := range rows {
				if i%1000 != 10 {
					good = append(good, i)
				}
			}
			for i, id := range got.ids {
				if wantID := fmt.Sprintf("id-%06d", good[i]); id.text != wantID || want.ids[i] != id {
					t.Fatalf("row %d: id %q (through cells %q); want %s", i, id.text, want.ids[i].text, wantID)
				}
			}
			if diff := cmp.Diff(want.cols, got.cols, cmp.AllowUnexported(column{})); diff != "" {
				t.Errorf("tensors (-through cells +straight):\n%s", diff)
			}
			if !tt.floats {
				for i, l := range got.cols[0].s {
					if want := fmt.Sprintf("label-%06d", good[i]); l != want {
						t.Fatalf("label of row %d = %q; want %s", i, l, want)
					}
				}
			}
			if len(gotBad) != rows/1000+1 || !slices.Equal(gotBad, wantBad) || !strings.Contains(gotBad[0], `"oops" is not a number`) {
				t.Errorf("bad rows %q; want the %d of %q", gotBad, rows/1000+1, wantBad)
			}
		})
	}
}

// TestAppendCSVField checks that a field is quoted exactly when
// encoding/csv's Writer quotes it, and written as it writes it.
func TestAppendCSVField(t *testing.T) {
	for _, f := range []string{"", "plain", "1.5", `\.`, `a\.`, "a,b", `say "hi"`, "two\nlines", "cr\r", " lead", "\tlead",
		"trail ", "\u00a0nbsp", "\u0085nel", "\u2003em", "é", "x\u00a0"} {
		var want strings.Builder
		w := csv.NewWriter(&want)
		if err := w.Write([]string{f, "x"}); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		got := string(appendCSVField(appendCSVField(nil, []byte(f)), []byte("x")))
		got = got[:len(got)-1] + "\n"
		if got != want.String() {
			t.Errorf("appendCSVField(%q) = %q; encoding/csv writes %q", f, got, want.String())
		}
	}
}
