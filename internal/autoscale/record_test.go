package autoscale

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/google/go-cmp/cmp"
)

// TestRecordsReplay drives the autoscaler through an hour of traffic,
// recording every decision as the control loop does, and replays each
// record from its JSON form: every decision comes out the same.
func TestRecordsReplay(t *testing.T) {
	spec := serving.Spec{Scaling: serving.Scaling{MinReplicas: 0, MaxReplicas: 8, TargetConcurrency: 4, ScaleToZeroAfter: serving.D(2 * time.Minute)}}
	t0 := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	h := NewHistory(64)
	var st State
	var all []Record
	for i := range 3600 {
		now := t0.Add(time.Duration(i) * time.Second)
		load := 0.0
		switch {
		case i > 300 && i < 900:
			load = 10
		case i >= 900 && i < 960:
			load = 40 // a burst: panic
		case i >= 960 && i < 1800:
			load = 6
		}
		m := Metrics{StableConcurrency: load, PanicConcurrency: load, InFlight: int(load), Ready: int(st.Desired), LastActive: now}
		if load == 0 {
			m.LastActive = time.Time{}
		}
		dec := Scale(now, &spec, m, st)
		r := NewRecord(now, spec.Scaling, spec.Replicas, "", m, st, dec)
		all = append(all, r)
		h.Add(r)
		st = dec.State
	}
	for i, r := range all {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back Record
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !back.Replays() {
			d := Replay(back)
			t.Fatalf("record %d at %s: recorded %d %q, replayed %d %q", i, r.Time.Format(time.TimeOnly), r.Desired, r.Reason, d.Desired, d.Reason)
		}
	}
	kept := h.Records()
	if len(kept) == 0 || len(kept) > 64 {
		t.Fatalf("history keeps %d records, want 1..64", len(kept))
	}
	changes := 0
	for i := 1; i < len(all); i++ {
		if all[i].Desired != all[i-1].Desired || all[i].Reason != all[i-1].Reason || all[i].Panic != all[i-1].Panic {
			changes++
		}
	}
	if want := min(changes+1, 64); len(kept) != want {
		t.Errorf("history keeps %d records for %d distinct decisions in a row, want %d (repeats folded)", len(kept), changes+1, want)
	}
	for i := 1; i < len(kept); i++ {
		if !kept[i].Time.After(kept[i-1].Time) {
			t.Errorf("records %d and %d out of order: %s, %s", i-1, i, kept[i-1].Time, kept[i].Time)
		}
	}
}

// TestHistoryBounded: a History keeps its newest n records, oldest first,
// and folds repeats.
func TestHistoryBounded(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	h := NewHistory(3)
	for i := range 5 {
		h.Add(Record{Time: t0.Add(time.Duration(i) * time.Second), Desired: int32(i), Reason: fmt.Sprint(i)})
		h.Add(Record{Time: t0.Add(time.Duration(i)*time.Second + time.Millisecond), Desired: int32(i), Reason: fmt.Sprint(i)})
	}
	var got []int32
	for _, r := range h.Records() {
		got = append(got, r.Desired)
		if r.Repeats != 1 || r.Until.IsZero() {
			t.Errorf("record %d: repeats %d until %v, want 1 folded repeat", r.Desired, r.Repeats, r.Until)
		}
	}
	if diff := cmp.Diff([]int32{2, 3, 4}, got); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
}
