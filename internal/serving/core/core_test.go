package core

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseModelRef(t *testing.T) {
	for _, tt := range []struct {
		in     string
		want   ModelRef
		wantOK bool
		oip    string // OIPVersion(in)
	}{
		{in: "diabetes:3", want: ModelRef{Model: "diabetes", Version: 3}, wantOK: true, oip: "3"},
		{in: "diabetes@champion", want: ModelRef{Model: "diabetes", Alias: "champion"}, wantOK: true},
		{in: "diabetes:0"},
		{in: "diabetes:03"},
		{in: "diabetes:+3"},
		{in: "diabetes:x"},
		{in: "diabetes"},
		{in: "Diabetes:1"},
		{in: "models/a.json"},
		{in: "s3://b/k"},
		{in: "a.onnx:1"},
		{in: "-bad@alias"},
		{in: strings.Repeat("a", 64) + ":1"},
	} {
		got, ok := ParseModelRef(tt.in)
		if ok != tt.wantOK || got != tt.want {
			t.Errorf("ParseModelRef(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
		if ok && got.String() != tt.in {
			t.Errorf("ParseModelRef(%q).String() = %q", tt.in, got.String())
		}
		if v := OIPVersion(tt.in); v != tt.oip {
			t.Errorf("OIPVersion(%q) = %q; want %q", tt.in, v, tt.oip)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(struct{ D Duration }{D(90 * time.Second)})
	if err != nil || string(b) != `{"D":"1m30s"}` {
		t.Fatalf("Marshal = %s, %v; want {\"D\":\"1m30s\"}", b, err)
	}
	for _, tt := range []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: `"250ms"`, want: 250 * time.Millisecond},
		{in: `"1h30m"`, want: 90 * time.Minute},
		{in: `30`, wantErr: `must be a string such as "30s"`},
		{in: `"soon"`, wantErr: `invalid duration "soon"`},
	} {
		var d Duration
		err := json.Unmarshal([]byte(tt.in), &d)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("Unmarshal(%s) error = %v; want one saying %q", tt.in, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || d.Duration != tt.want):
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", tt.in, d.Duration, err, tt.want)
		}
	}
}

func TestArtifactFetchPhase(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	hit := true
	got := ArtifactFetch{FetchedAt: at, Took: D(time.Second), Bytes: 42, CacheHit: hit}.Phase()
	want := Phase{Name: PhaseArtifactFetched, At: at, Duration: D(time.Second), Bytes: 42, CacheHit: &hit}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Phase() (-want +got):\n%s", diff)
	}
}
