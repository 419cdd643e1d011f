package jobs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// TestScanSegment reads segments torn and damaged as a crash, or a disk,
// leaves them: the whole frames before the first that is not are kept,
// nothing after it.
func TestScanSegment(t *testing.T) {
	a, b, c := encodeFrame("a-000000", []byte("rows of a\n")), encodeFrame("b-000001", []byte("rows of b\n")), encodeFrame("c-000002", []byte("c\n"))
	flip := func(f []byte, at int) []byte {
		f = bytes.Clone(f)
		f[at] ^= 0x40
		return f
	}
	huge := bytes.Clone(b)
	huge[6] = 0xff // a body length beyond the segment's end
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	tests := []struct {
		name string
		seg  []byte
		want []string // the chunks indexed, in segment order
	}{
		{"empty", nil, nil},
		{"whole", cat(a, b, c), []string{"a-000000", "b-000001", "c-000002"}},
		{"torn header", cat(a, b[:frameHeader-3]), []string{"a-000000"}},
		{"torn id", cat(a, b[:frameHeader+2]), []string{"a-000000"}},
		{"torn body", cat(a, b[:len(b)-1]), []string{"a-000000"}},
		{"body damaged", cat(a, flip(b, len(b)-2), c), []string{"a-000000"}},
		{"id damaged", cat(a, flip(b, frameHeader), c), []string{"a-000000"}},
		{"checksum damaged", cat(a, flip(b, 15), c), []string{"a-000000"}},
		{"not a frame", cat(a, []byte("{\"ebbPart\":1}\n"), c), []string{"a-000000"}},
		{"zeros after", cat(a, b, make([]byte, 4096)), []string{"a-000000", "b-000001"}},
		{"length past the end", cat(a, huge, c), []string{"a-000000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx := map[string]frameAt{}
			if err := scanSegment(bytes.NewReader(tt.seg), "s.log", int64(len(tt.seg)), idx); err != nil {
				t.Fatal(err)
			}
			if len(idx) != len(tt.want) {
				t.Fatalf("indexed %v; want %v", idx, tt.want)
			}
			var off int64
			for _, id := range tt.want {
				at, ok := idx[id]
				if !ok || at.seg != "s.log" || at.off != off {
					t.Fatalf("chunk %s at %+v (%v); want offset %d of s.log", id, at, ok, off)
				}
				off += at.n
			}
		})
	}
}

// TestPartsLatest writes parts logs as Runs after crashes leave them:
// frames of one chunk in several segments (synced, then a crash before
// the checkpoint, then sent again), the latest segment's is read; a
// segment torn at its end keeps its whole frames. On files and on the
// partsWriter's own segments alike.
func TestPartsLatest(t *testing.T) {
	dir := t.TempDir()
	out, err := parseLoc(filepath.Join(dir, "out.csv"))
	if err != nil {
		t.Fatal(err)
	}
	parts := partsDir(out)
	if err := os.MkdirAll(parts, 0o755); err != nil {
		t.Fatal(err)
	}
	segs := []struct {
		name   string
		frames [][2]string // id, body
		tear   int         // bytes cut off its end
	}{
		{"0000000000000001-aaaa.log", [][2]string{{"c0", "old 0"}, {"c1", "old 1"}, {"c2", "torn"}}, 1},
		{"0000000000000002-bbbb.log", [][2]string{{"c1", "new 1"}, {"c3", "only 3"}}, 0},
	}
	for _, s := range segs {
		var b []byte
		for _, f := range s.frames {
			b = append(b, encodeFrame(f[0], []byte(f[1]))...)
		}
		if err := os.WriteFile(filepath.Join(parts, s.name), b[:len(b)-s.tear], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A Run after those: its own segment, named later.
	st := &Storage{}
	w := st.partsWriter(out)
	defer w.close()
	at, err := w.append("c3", []byte("newest 3"))
	if err == nil {
		err = w.sync(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
	idx, err := st.scanParts(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	if idx["c3"] != at {
		t.Errorf("c3 at %+v; want the Run's own frame at %+v", idx["c3"], at)
	}
	r := st.partsReader(out)
	defer r.close()
	for id, want := range map[string]string{"c0": "old 0", "c1": "new 1", "c3": "newest 3"} {
		body, err := r.part(context.Background(), id, idx[id])
		if err != nil || string(body) != want {
			t.Errorf("part of %s = %q, %v; want %q", id, body, err, want)
		}
	}
	if _, ok := idx["c2"]; ok || len(idx) != 3 {
		t.Errorf("indexed %v; want c0, c1, c3 (c2 torn)", idx)
	}
	// A frame read where another chunk's is, or damaged since it was
	// indexed, is an error, not another chunk's rows.
	if _, err := r.part(context.Background(), "c0", idx["c1"]); err == nil || !strings.Contains(err.Error(), "chunk c1's") {
		t.Errorf("c0's part read at c1's frame: %v; want an error naming c1", err)
	}
	seg := filepath.Join(parts, segs[0].name)
	b, _ := os.ReadFile(seg)
	b[idx["c0"].n-1] ^= 1
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := st.partsReader(out).part(context.Background(), "c0", idx["c0"]); err == nil {
		t.Error("a damaged frame was read without an error")
	}
}

// syncCheckStore is a Store that checks, as each chunk is recorded, that
// its frame is whole in the parts log already: a checkpoint never comes
// before its part.
type syncCheckStore struct {
	*sqlstore.Store
	t       *testing.T
	st      *Storage
	out     loc
	records int
}

func (s *syncCheckStore) PutJobChunk(ctx context.Context, c store.JobChunk) error {
	idx, err := s.st.scanParts(ctx, s.out)
	if err != nil {
		return err
	}
	if _, ok := idx[c.ID]; !ok {
		s.t.Errorf("chunk %s recorded before its frame is in the parts log", c.ID)
	}
	s.records++
	return s.Store.PutJobChunk(ctx, c)
}

// TestGroupCommit runs jobs with groups of several sizes: every chunk is
// recorded once, after its frame is written, and the output has every
// row once, in order.
func TestGroupCommit(t *testing.T) {
	const rows = 2345 // 24 chunks
	for _, group := range []int{1, 5, 64} {
		t.Run("group of "+strconv.Itoa(group), func(t *testing.T) {
			dir := t.TempDir()
			in := writeDataset(t, dir, serving.FormatCSV, rows, -1)
			outPath := filepath.Join(dir, "out.jsonl")
			out, _ := parseLoc(outPath)
			st := &syncCheckStore{Store: openStore(t, dir), t: t, st: &Storage{}, out: out}
			opts := fastOptions()
			opts.CommitChunks = group
			got := runJob(t, st, testJob("group", in, outPath), &sumModel{}, &fakeScaler{}, opts)
			if got.Status.Phase != serving.JobSucceeded || got.Status.ChunksDone != 24 || st.records != 24 {
				t.Fatalf("job %s (%s), %d chunks done, %d recorded; want Succeeded, 24, 24", got.Status.Phase, got.Status.Message, got.Status.ChunksDone, st.records)
			}
			checkOutput(t, readOutput(t, outPath, serving.FormatJSONL), rows, -1)
		})
	}
}
