package predlog

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTee(t *testing.T) {
	a, b := &memSink{}, &memSink{}
	if s := Tee(a); s != Sink(a) {
		t.Errorf("Tee of one sink = %T; want the sink itself", s)
	}
	s := Tee(a, b)
	recs := testRecords()
	if err := s.Write(recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Tick(t0); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]*memSink{"first": a, "second": b} {
		if diff := cmp.Diff(recs, m.recs); diff != "" {
			t.Errorf("%s sink's records (-want +got):\n%s", name, diff)
		}
		if m.ticks != 1 {
			t.Errorf("%s sink ticked %d times; want 1", name, m.ticks)
		}
	}

	// A failing sink fails the write, and the others still get it.
	a.failing = true
	err := s.Write(recs[:1])
	if err == nil || len(b.recs) != len(recs)+1 {
		t.Errorf("write with the first sink failing: err %v, second sink has %d records; want an error and %d", err, len(b.recs), len(recs)+1)
	}
	if err := s.Close(); err != nil || !a.closed || !b.closed {
		t.Errorf("Close: %v, closed %v %v; want both closed", err, a.closed, b.closed)
	}
}

// TestTeeUnderLogger checks that a Logger fans out to both sinks, and
// counts a batch one sink refused as dropped.
func TestTeeUnderLogger(t *testing.T) {
	a, b := &memSink{}, &memSink{failing: true}
	l := New(Tee(a, b), Options{DefaultRatio: 1})
	for _, r := range testRecords() {
		l.Log(r)
	}
	var spare []Record
	l.drain(&spare)
	if a.len() != 3 {
		t.Errorf("the working sink got %d records; want 3", a.len())
	}
	if records, _ := l.Queued(); records != 0 {
		t.Errorf("%d records still queued after a drain", records)
	}
}
