package server

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNoticeRoundTrip(t *testing.T) {
	loaded := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name string
		n    Notice
		line string
	}{
		{"ready", Notice{ModelLoadedAt: loaded, ReadyAt: loaded.Add(time.Millisecond)},
			`{"modelLoadedAt":"2025-03-01T12:00:00.123456789Z","readyAt":"2025-03-01T12:00:00.124456789Z"}` + "\n"},
		{"failed", Notice{Error: `load model /m/iris.json: unexpected end of JSON input`},
			`{"error":"load model /m/iris.json: unexpected end of JSON input"}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteNotice(&buf, tt.n); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.line, buf.String()); diff != "" {
				t.Errorf("line (-want +got):\n%s", diff)
			}
			got, err := ReadNotice(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.n, got); diff != "" {
				t.Errorf("notice (-want +got):\n%s", diff)
			}
			if (got.Err() != nil) != (tt.n.Error != "") {
				t.Errorf("Err() = %v for %+v", got.Err(), got)
			}
		})
	}
}

func TestReadNoticeErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantIs  error
		wantMsg string
	}{
		{"closed without writing", "", io.EOF, "without reporting"},
		{"cut short", `{"readyAt":"2025-`, io.ErrUnexpectedEOF, "middle"},
		{"not JSON", "panic: oops\n", nil, "reading readiness notice"},
		{"empty object", "{}\n", nil, "neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadNotice(strings.NewReader(tt.in))
			if err == nil {
				t.Fatal("ReadNotice succeeded, want an error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
		})
	}
}

// TestReadNoticeDoesNotWaitForClose reads from a pipe whose writer stays
// open, as a replica's might for a moment after writing.
func TestReadNoticeDoesNotWaitForClose(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	want := Notice{ReadyAt: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)}
	go WriteNotice(w, want)
	got, err := ReadNotice(r)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("notice (-want +got):\n%s", diff)
	}
}
