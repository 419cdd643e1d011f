package predlog

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestPruneParts(t *testing.T) {
	dir := t.TempDir()
	clk := clocktesting.NewFakePassiveClock(t0)
	s, err := NewFileSink(FileOptions{Dir: dir, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	// Four parts, a minute apart, oldest first.
	for range 4 {
		if err := s.Write(testRecords()[:1]); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		clk.SetTime(clk.Now().Add(time.Minute))
	}
	parts := readParts(t, dir)
	if len(parts) != 4 {
		t.Fatalf("parts %v; want 4", parts)
	}
	fi, err := os.Stat(filepath.Join(dir, parts[0]))
	if err != nil {
		t.Fatal(err)
	}
	// The part being written is never a candidate.
	if err := os.WriteFile(filepath.Join(dir, ".predlog-x.jsonl.tmp"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}

	n, records, err := PruneParts(dir, 2*fi.Size())
	if err != nil || n != 2 || records != 2 {
		t.Errorf("PruneParts = %d parts, %d records, %v; want 2, 2, nil", n, records, err)
	}
	entries, _ := os.ReadDir(dir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{".predlog-x.jsonl.tmp", parts[2], parts[3]}
	if len(left) != 3 || left[0] != want[0] || left[1] != want[1] || left[2] != want[2] {
		t.Errorf("left %v; want the newest two parts and the temporary one: %v", left, want)
	}
	if n, _, err := PruneParts(dir, 2*fi.Size()); n != 0 || err != nil {
		t.Errorf("second PruneParts = %d, %v; want nothing to do", n, err)
	}
}
