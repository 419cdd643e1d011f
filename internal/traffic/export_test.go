package traffic

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestMergeOfExportsEqualsOneMeter meters one stream of requests at two
// gateways, each exporting at its own times, merges their exports into one
// Meter, and checks it against a Meter that observed every request.
func TestMergeOfExportsEqualsOneMeter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	all, merged := NewMeter(0, 0), NewMeter(0, 0)
	gws := []*Meter{NewMeter(0, 0), NewMeter(0, 0)}
	next := []time.Time{t0, t0}
	// Reports every 700ms at the first gateway and 1.3s at the second.
	every := []time.Duration{700 * time.Millisecond, 1300 * time.Millisecond}
	due := []time.Time{t0.Add(every[0]), t0.Add(every[1])}
	const n = 20000
	end := t0.Add(40 * time.Second)
	for i := range n {
		at := t0.Add(time.Duration(i) * 2 * time.Millisecond)
		for g := range gws {
			for !due[g].After(at) {
				var bs []Bucket
				bs, next[g] = gws[g].Export(next[g], due[g])
				if err := merged.Merge(bs); err != nil {
					t.Fatal(err)
				}
				due[g] = due[g].Add(every[g])
			}
		}
		lat := time.Duration(rng.ExpFloat64()*20000) * time.Microsecond
		failed := rng.IntN(50) == 0
		all.Observe(at, lat, failed)
		gws[rng.IntN(2)].Observe(at, lat, failed)
	}
	for g := range gws {
		bs, _ := gws[g].Export(next[g], end)
		if err := merged.Merge(bs); err != nil {
			t.Fatal(err)
		}
	}
	want, _ := all.Export(t0, end)
	got, _ := merged.Export(t0, end)
	if len(want) != 40 {
		t.Fatalf("the meter that saw everything exports %d buckets, want 40", len(want))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("merged buckets (-one meter +merged):\n%s", diff)
	}
	for _, iv := range []struct{ from, to time.Duration }{{0, 40 * time.Second}, {5 * time.Second, 6 * time.Second}, {12 * time.Second, 31 * time.Second}} {
		w, g := all.Snapshot(t0.Add(iv.from), t0.Add(iv.to)), merged.Snapshot(t0.Add(iv.from), t0.Add(iv.to))
		if w.Requests == 0 {
			t.Fatalf("no request in [%v, %v]", iv.from, iv.to)
		}
		if diff := cmp.Diff(w, g); diff != "" {
			t.Errorf("Snapshot [%v, %v] (-one meter +merged):\n%s", iv.from, iv.to, diff)
		}
	}
}

func TestExportGivesCompletedBucketsOnce(t *testing.T) {
	m := NewMeter(0, 0)
	m.Observe(t0.Add(500*time.Millisecond), 3*time.Millisecond, false)
	m.Observe(t0.Add(600*time.Millisecond), 40*time.Millisecond, true)
	m.Observe(t0.Add(1200*time.Millisecond), 3*time.Millisecond, false)
	m.Observe(t0.Add(3100*time.Millisecond), 3*time.Millisecond, false)

	type step struct {
		now      time.Duration
		want     []int64 // starts of the buckets exported, seconds after t0
		wantNext time.Duration
	}
	since := t0
	for _, s := range []step{
		{now: 1500 * time.Millisecond, want: []int64{0}, wantNext: time.Second},
		{now: 1900 * time.Millisecond, wantNext: time.Second}, // second 1 is not over
		{now: 3500 * time.Millisecond, want: []int64{1}, wantNext: 3 * time.Second},
		{now: 4 * time.Second, want: []int64{3}, wantNext: 4 * time.Second},
		{now: 4 * time.Second, wantNext: 4 * time.Second},
	} {
		bs, next := m.Export(since, t0.Add(s.now))
		var starts []int64
		for _, b := range bs {
			starts = append(starts, b.Start-t0.Unix())
		}
		if diff := cmp.Diff(s.want, starts); diff != "" || !next.Equal(t0.Add(s.wantNext)) {
			t.Errorf("Export at %v: buckets (-want +got):\n%s next %v, want %v", s.now, diff, next.Sub(t0), s.wantNext)
		}
		since = next
	}

	bs, _ := m.Export(t0, t0.Add(time.Second))
	want := []Bucket{{Start: t0.Unix(), Requests: 2, Errors: 1, Hist: []uint32{uint32(binOf(3000)), 1, uint32(binOf(40000)), 1}}}
	if diff := cmp.Diff(want, bs); diff != "" {
		t.Errorf("bucket 0 (-want +got):\n%s", diff)
	}
	if bs, next := m.Export(t0.Add(9*time.Second), t0.Add(2*time.Second)); bs != nil || !next.Equal(t0.Add(9*time.Second)) {
		t.Errorf("Export with since after now = %v, next %v; want nothing and next at since", bs, next.Sub(t0))
	}
}

func TestExportIsCutToTheSpan(t *testing.T) {
	m := NewMeter(10*time.Second, time.Second)
	for i := range 30 {
		m.Observe(t0.Add(time.Duration(i)*time.Second), time.Millisecond, false)
	}
	bs, next := m.Export(time.Time{}, t0.Add(30*time.Second))
	if len(bs) != 10 || bs[0].Start != t0.Unix()+20 || bs[9].Start != t0.Unix()+29 || !next.Equal(t0.Add(30*time.Second)) {
		t.Errorf("Export from the zero time = %d buckets from %d, next %v; want the 10 of seconds 20..29, next 30s", len(bs), bs[0].Start-t0.Unix(), next.Sub(t0))
	}
}

func TestMergeChecksBuckets(t *testing.T) {
	ok := Bucket{Start: t0.Unix(), Requests: 3, Errors: 1, Hist: []uint32{4, 2, 100, 1}}
	tests := []struct {
		name string
		b    Bucket
		want string // in the error; "" for valid
	}{
		{name: "valid", b: ok},
		{name: "empty", b: Bucket{Start: t0.Unix()}},
		{name: "odd histogram", b: Bucket{Requests: 1, Hist: []uint32{4}}, want: "odd number"},
		{name: "bin out of range", b: Bucket{Requests: 1, Hist: []uint32{histBins, 1}}, want: "out of range"},
		{name: "bins not ascending", b: Bucket{Requests: 2, Hist: []uint32{9, 1, 4, 1}}, want: "ascending"},
		{name: "repeated bin", b: Bucket{Requests: 2, Hist: []uint32{4, 1, 4, 1}}, want: "ascending"},
		{name: "zero count", b: Bucket{Requests: 1, Hist: []uint32{4, 1, 9, 0}}, want: "count of 0"},
		{name: "requests do not add up", b: Bucket{Requests: 5, Hist: []uint32{4, 2}}, want: "5 requests but the histogram counts 2"},
		{name: "more errors than requests", b: Bucket{Requests: 2, Errors: 3, Hist: []uint32{4, 2}}, want: "3 errors out of 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMeter(0, 0)
			err := m.Merge([]Bucket{ok, tt.b})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Merge: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Merge = %v; want an error with %q", err, tt.want)
			}
			if got := m.Snapshot(t0, t0.Add(time.Second)); got.Requests != 0 {
				t.Errorf("a refused merge counted %d requests: it must merge nothing", got.Requests)
			}
		})
	}
}

func TestMergeIgnoresBucketsOlderThanTheSpan(t *testing.T) {
	m := NewMeter(10*time.Second, time.Second)
	m.Observe(t0.Add(30*time.Second), time.Millisecond, false)
	// Second 20 shares its ring slot with second 30, which is newer.
	old := Bucket{Start: t0.Unix() + 20, Requests: 1, Errors: 1, Hist: []uint32{4, 1}}
	if err := m.Merge([]Bucket{old}); err != nil {
		t.Fatal(err)
	}
	if got := m.Snapshot(t0, t0.Add(30*time.Second)); got.Requests != 1 || got.Errors != 0 {
		t.Errorf("Snapshot = %+v; want the 1 request of second 30 only", got)
	}
}

func TestBucketJSON(t *testing.T) {
	in := []Bucket{{Start: 1772366400, Requests: 3, Errors: 1, Hist: []uint32{4, 2, 100, 1}}, {Start: 1772366401, Requests: 1, Hist: []uint32{7, 1}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"t":1772366400,"n":3,"e":1,"h":[4,2,100,1]},{"t":1772366401,"n":1,"h":[7,1]}]`
	if string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
	var back []Bucket
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}
