package predlog

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/parquet-go/parquet-go"
	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.UTC)

func testRecords() []Record {
	return []Record{
		{Time: t0, Deployment: "iris", ModelVersion: "3", Tenant: "team-a", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", RequestID: "r1",
			Inputs:  []byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}`),
			Outputs: []byte(`{"model_name":"iris","outputs":[{"name":"label","shape":[1],"datatype":"INT64","data":[0]}]}`),
			Status:  200, Latency: 1500 * time.Microsecond},
		{Time: t0.Add(time.Second), Deployment: "iris", ModelVersion: "3", RequestID: "r2",
			Inputs: []byte{0x00, 0xff, 0x10}, // binary tensors: not JSON
			Status: 200, Latency: 2 * time.Millisecond},
		{Time: t0.Add(2 * time.Second), Deployment: "fraud", RequestID: "r3", Inputs: []byte(`{"inputs":[]}`), Outputs: []byte(`{"error":"bad shape"}`), Status: 400},
	}
}

// readParts returns the completed parts in dir, in name order, and fails
// on any temporary part left behind.
func readParts(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary part %s left", e.Name())
			continue
		}
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

func readJSONL(t *testing.T, path string) []JSONRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []JSONRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r JSONRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

func readParquet(t *testing.T, path string) []ParquetRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := parquet.Read[ParquetRecord](f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestRoundTrip(t *testing.T) {
	recs := testRecords()
	for _, format := range []Format{JSONL, Parquet} {
		t.Run(string(format), func(t *testing.T) {
			dir := t.TempDir()
			s, err := NewFileSink(FileOptions{Dir: dir, Format: format})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Write(recs); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			parts := readParts(t, dir)
			if len(parts) != 1 {
				t.Fatalf("parts %v; want one", parts)
			}
			path := filepath.Join(dir, parts[0])
			if format == JSONL {
				var want []JSONRecord
				for i := range recs {
					want = append(want, toJSON(&recs[i]))
				}
				if diff := cmp.Diff(want, readJSONL(t, path)); diff != "" {
					t.Errorf("JSONL (-want +got):\n%s", diff)
				}
				if got := readJSONL(t, path)[1].InputsBase64; string(got) != "\x00\xff\x10" {
					t.Errorf("binary inputs read back as %q", got)
				}
				return
			}
			var want []ParquetRecord
			for i := range recs {
				want = append(want, toParquet(&recs[i]))
			}
			got := readParquet(t, path)
			if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b []byte) bool { return string(a) == string(b) })); diff != "" {
				t.Errorf("Parquet (-want +got):\n%s", diff)
			}
			if tm := time.UnixMicro(got[0].Time).UTC(); !tm.Equal(t0) {
				t.Errorf("time read back %v; want %v", tm, t0)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	one := testRecords()[:1]
	size := int64(one[0].Size())
	for _, format := range []Format{JSONL, Parquet} {
		t.Run(string(format), func(t *testing.T) {
			dir := t.TempDir()
			clk := clocktesting.NewFakeClock(t0)
			var notified []int
			s, err := NewFileSink(FileOptions{
				Dir: dir, Format: format, Clock: clk,
				MaxPartBytes: 3 * size, MaxPartAge: time.Minute, RowGroupBytes: 2 * size,
				OnPart: func(path string, n int) {
					if _, err := os.Stat(path); err != nil {
						t.Errorf("OnPart(%s) before the part is in place: %v", path, err)
					}
					notified = append(notified, n)
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			write := func(n int) {
				for range n {
					if err := s.Write(one); err != nil {
						t.Fatal(err)
					}
				}
			}
			write(7) // by size: 3, 3, and 1 open
			clk.Step(30 * time.Second)
			_ = s.Tick(clk.Now()) // not old enough
			write(1)              // the open part has 2
			clk.Step(31 * time.Second)
			_ = s.Tick(clk.Now()) // by age: closes the 2
			_ = s.Tick(clk.Now()) // nothing open
			write(1)              // a new part at t0+61s
			clk.Step(2 * time.Minute)
			write(1) // by age, on Write: closes the 1, opens another
			// Close closes the last.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]int{3, 3, 2, 1, 1}, notified); diff != "" {
				t.Errorf("parts' records (-want +got):\n%s", diff)
			}
			parts := readParts(t, dir)
			var counts []int
			total := 0
			for _, p := range parts {
				info, ok := ParsePartName(p)
				if !ok || info.Format != format {
					t.Fatalf("part name %s does not parse", p)
				}
				counts = append(counts, info.Records)
				if format == JSONL {
					total += len(readJSONL(t, filepath.Join(dir, p)))
				} else {
					total += len(readParquet(t, filepath.Join(dir, p)))
				}
			}
			if diff := cmp.Diff([]int{3, 3, 2, 1, 1}, counts); diff != "" {
				t.Errorf("records per part, by name (-want +got):\n%s", diff)
			}
			if total != 10 {
				t.Errorf("%d records read back; want 10", total)
			}
		})
	}
}

func TestParsePartName(t *testing.T) {
	tests := []struct {
		name string
		want PartInfo
		ok   bool
	}{
		{"predlog-20260304T050607.890Z-0a1b2c3d-000012-n345.jsonl", PartInfo{Start: t0, Instance: "0a1b2c3d", Seq: 12, Records: 345, Format: JSONL}, true},
		{"predlog-20260304T050607.890Z-0a1b2c3d-000001-n0.parquet", PartInfo{Start: t0, Instance: "0a1b2c3d", Seq: 1, Records: 0, Format: Parquet}, true},
		{".predlog-20260304T050607.890Z-0a1b2c3d-000001.jsonl.tmp", PartInfo{}, false},
		{"predlog-20260304T050607.890Z-0a1b2c3d-000001-n3.jsonl.sent", PartInfo{}, false},
		{"predlog-20260304T050607.890Z-0a1b2c3d-000001-3.jsonl", PartInfo{}, false},
		{"predlog-yesterday-0a1b2c3d-000001-n3.jsonl", PartInfo{}, false},
		{"other.jsonl", PartInfo{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParsePartName(tt.name)
			if ok != tt.ok {
				t.Fatalf("ok = %v; want %v", ok, tt.ok)
			}
			if ok {
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("info (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestNewFileSinkErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts FileOptions
		want string
	}{
		{"no dir", FileOptions{}, "no directory"},
		{"bad format", FileOptions{Dir: t.TempDir(), Format: "csv"}, `format "csv"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewFileSink(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v; want %q", err, tt.want)
			}
		})
	}
}
