package python

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/oip"
)

// sampleTensors has a tensor of every datatype the channel carries, with
// the shapes that matter: rank 0, empty, and data sizes that need padding.
func sampleTensors() []oip.Tensor {
	big := make([]float32, 300) // above the size that rides in the header
	for i := range big {
		big[i] = float32(i) / 3
	}
	return []oip.Tensor{
		{Name: "b", Datatype: oip.BOOL, Shape: []int64{3}, Data: []bool{true, false, true}},
		{Name: "i32", Datatype: oip.INT32, Shape: []int64{1, 3}, Data: []int32{-1, 0, math.MaxInt32}},
		{Name: "i64", Datatype: oip.INT64, Shape: []int64{}, Data: []int64{math.MinInt64}},
		{Name: "f32", Datatype: oip.FP32, Shape: []int64{100, 3}, Data: big},
		{Name: "f64", Datatype: oip.FP64, Shape: []int64{2}, Data: []float64{math.Inf(-1), 1.5}},
		{Name: "i8", Datatype: oip.INT8, Shape: []int64{3}, Data: []int8{-128, 0, 127}},
		{Name: "u16", Datatype: oip.UINT16, Shape: []int64{1}, Data: []uint16{65535}},
		{Name: "u64", Datatype: oip.UINT64, Shape: []int64{1}, Data: []uint64{1<<64 - 1}},
		{Name: "f16", Datatype: oip.FP16, Shape: []int64{1}, Data: []oip.Float16{oip.Float16From(-2.5)}},
		{Name: "bf16", Datatype: oip.BF16, Shape: []int64{1}, Data: []oip.BFloat16{oip.BFloat16From(3)}},
		{Name: "empty", Datatype: oip.FP64, Shape: []int64{0, 4}, Data: []float64{}},
		{Name: "ünïcode", Datatype: oip.BYTES, Shape: []int64{2, 2}, Data: []string{"", "a", "hé", "\x00\xff"}},
		{Name: "scalar string", Datatype: oip.BYTES, Shape: []int64{}, Data: []string{"one"}},
	}
}

// frameBytes joins an inferFrame's buffers into the frame as written.
func frameBytes(t *testing.T, id uint64, in []oip.Tensor) []byte {
	t.Helper()
	bufs, total, err := inferFrame(id, in)
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Join(bufs, nil)
	if len(b) != total {
		t.Fatalf("inferFrame reported %d bytes, wrote %d", total, len(b))
	}
	return b
}

func TestFrameRoundTrip(t *testing.T) {
	in := sampleTensors()
	b := frameBytes(t, 42, in)
	if len(b)%8 != 4 {
		t.Errorf("frame of %d bytes: the body (after the 4-byte length) is not a multiple of 8", len(b))
	}
	f, err := readFrame(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatal(err)
	}
	if f.kind != kindInfer || f.id != 42 {
		t.Errorf("frame kind %d id %d, want %d 42", f.kind, f.id, kindInfer)
	}
	// A RESULT has the same payload as an INFER.
	out, err := decodeTensors(f.payload)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("tensors after a round trip (-sent +decoded):\n%s", diff)
	}
}

// TestFrameAlignment checks that each tensor's data starts 8-byte aligned
// in the body, so the worker can wrap it in a numpy array as is.
func TestFrameAlignment(t *testing.T) {
	for _, tt := range sampleTensors() {
		b := frameBytes(t, 1, []oip.Tensor{{Name: "x", Datatype: oip.INT32, Shape: []int64{3}, Data: []int32{1, 2, 3}}, tt})
		body := b[4:]
		// Skip the first tensor: header, dims, name, datatype, padding,
		// 12 bytes of data and 4 of padding.
		off := bodyHeader + 4
		off += tensorHeader + 8 + len("x") + len("INT32") + pad8(len("x")+len("INT32")) + 16
		h := body[off:]
		rank := int(h[3])
		dataAt := off + tensorHeader + 8*rank + len(tt.Name) + len(tt.Datatype)
		dataAt += pad8(len(tt.Name) + len(tt.Datatype))
		if dataAt%8 != 0 {
			t.Errorf("%s: data at body offset %d, not 8-byte aligned", tt.Name, dataAt)
		}
	}
}

// TestPoolFrames checks the frames of a pool's worker: INFER_TO is INFER
// behind a model number and a zero word (so its tensors stay 8-byte
// aligned), and LOAD and UNLOAD carry the model number and their text.
func TestPoolFrames(t *testing.T) {
	in := sampleTensors()
	bufs, total, err := inferToFrame(7, 0xdeadbeef, in)
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Join(bufs, nil)
	if len(b) != total || len(b)%8 != 4 {
		t.Fatalf("INFER_TO of %d bytes (reported %d): the body is not a multiple of 8", len(b), total)
	}
	f, err := readFrame(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatal(err)
	}
	if f.kind != kindInferTo || f.id != 7 || le.Uint32(f.payload) != 0xdeadbeef || le.Uint32(f.payload[4:]) != 0 {
		t.Fatalf("INFER_TO kind %d id %d payload % x..., want kind %d id 7, the model number and a zero word", f.kind, f.id, f.payload[:8], kindInferTo)
	}
	infer := frameBytes(t, 7, in)
	if got, want := b[4+bodyHeader+8:], infer[4+bodyHeader:]; !bytes.Equal(got, want) {
		t.Errorf("INFER_TO's payload after the model number is not INFER's")
	}

	for _, tt := range []struct {
		kind byte
		text string
	}{{kindLoad, `{"name":"m","class":"m.py:M","path":"/models/m"}`}, {kindUnload, ""}} {
		b := controlFrame(tt.kind, 9, 3, []byte(tt.text))
		f, err := readFrame(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatal(err)
		}
		p := f.payload
		if f.kind != tt.kind || f.id != 9 || le.Uint32(p) != 3 || int(le.Uint32(p[4:])) != len(tt.text) || string(p[8:]) != tt.text {
			t.Errorf("frame of kind %d: kind %d id %d payload %q", tt.kind, f.kind, f.id, p)
		}
	}
}

func TestInferFrameRefusesWrongData(t *testing.T) {
	tests := []struct {
		name string
		in   oip.Tensor
		want string
	}{
		{"wrong Go type", oip.Tensor{Name: "x", Datatype: oip.FP32, Shape: []int64{1}, Data: []float64{1}}, `input "x": data of type []float64 does not match datatype FP32`},
		{"unknown datatype", oip.Tensor{Name: "x", Datatype: "FP8", Shape: []int64{1}, Data: []uint8{1}}, `input "x": datatype FP8 cannot be passed to a Python model`},
		{"strings", oip.Tensor{Name: "s", Datatype: oip.BYTES, Shape: []int64{1}, Data: []int32{1}}, `input "s": data of type []int32 does not match datatype BYTES`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := inferFrame(1, []oip.Tensor{tt.in})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("inferFrame error %v, want %q", err, tt.want)
			}
		})
	}
}

// tensorBytes builds one tensor of a payload by hand.
func tensorBytes(name, datatype string, shape []int64, data []byte) []byte {
	var b []byte
	b = le.AppendUint16(b, uint16(len(name)))
	b = append(b, byte(len(datatype)), byte(len(shape)), 0, 0, 0, 0)
	b = le.AppendUint64(b, uint64(len(data)))
	for _, d := range shape {
		b = le.AppendUint64(b, uint64(d))
	}
	b = append(b, name...)
	b = append(b, datatype...)
	b = append(b, make([]byte, pad8(len(name)+len(datatype)))...)
	b = append(b, data...)
	return append(b, make([]byte, pad8(len(data)))...)
}

// payload builds a RESULT payload of tensors.
func payload(tensors ...[]byte) []byte {
	b := le.AppendUint32(nil, uint32(len(tensors)))
	for _, t := range tensors {
		b = append(b, t...)
	}
	return b
}

func TestDecodeTensorsRefusesMalformed(t *testing.T) {
	four := le.AppendUint32(nil, 7)
	tests := []struct {
		name    string
		payload []byte
		want    string
		framing bool // the framing broke: the worker is stopped
	}{
		{name: "empty", payload: nil, want: "no tensor count", framing: true},
		{name: "count too large", payload: le.AppendUint32(nil, 1<<30), want: "tensors in", framing: true},
		{name: "header cut", payload: payload(tensorBytes("x", "FP32", []int64{1}, four))[:20], want: "cut short", framing: true},
		{name: "data past end", payload: payload(tensorBytes("x", "FP32", []int64{1}, four))[:38], want: "past the end", framing: true},
		{name: "size mismatch", payload: payload(tensorBytes("x", "FP32", []int64{2}, four)), want: `shape [2] of FP32 needs 8 bytes, got 4`, framing: true},
		{name: "negative dim", payload: payload(tensorBytes("x", "FP32", []int64{-1}, four)), want: "negative dimension"},
		{name: "unknown datatype", payload: payload(tensorBytes("x", "FP8", []int64{4}, four)), want: `datatype "FP8", which this replica does not serve`},
		{name: "string cut", payload: payload(tensorBytes("s", "BYTES", []int64{1}, le.AppendUint32(nil, 9))), want: "string 0 cut short", framing: true},
		{name: "strings left over", payload: payload(tensorBytes("s", "BYTES", []int64{1}, append(le.AppendUint32(nil, 1), 'a', 0, 0, 0, 0))), want: "bytes after its 1 strings", framing: true},
		{name: "too many strings", payload: payload(tensorBytes("s", "BYTES", []int64{1 << 20}, four)), want: "strings in", framing: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeTensors(tt.payload)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("decodeTensors error %v, want %q", err, tt.want)
			}
			if got := errors.Is(err, errFrame); got != tt.framing {
				t.Errorf("errors.Is(err, errFrame) = %v, want %v (%v)", got, tt.framing, err)
			}
		})
	}
}

func TestReadFrame(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"end between frames", nil, io.EOF},
		{"length cut", []byte{1, 0}, io.ErrUnexpectedEOF},
		{"body cut", append(le.AppendUint32(nil, 20), make([]byte, 10)...), io.ErrUnexpectedEOF},
		{"body too short for its header", append(le.AppendUint32(nil, 4), 1, 2, 3, 4), errFrame},
		{"body too long", le.AppendUint32(nil, MaxFrameBytes+1), errFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readFrame(bufio.NewReader(bytes.NewReader(tt.in)))
			if !errors.Is(err, tt.want) {
				t.Errorf("readFrame error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDecodeErrorAndText(t *testing.T) {
	p := append([]byte{0x90, 0x01, 0, 0}, le.AppendUint32(nil, 5)...)
	status, msg, err := decodeError(append(p, "hello"...))
	if err != nil || status != 400 || msg != "hello" {
		t.Errorf("decodeError = %d %q %v, want 400 hello", status, msg, err)
	}
	if _, _, err := decodeError(append(p, "hi"...)); !errors.Is(err, errFrame) {
		t.Errorf("decodeError of a cut message: %v, want errFrame", err)
	}
	if s, err := decodeText(append(le.AppendUint32(nil, 2), "{}"...)); err != nil || s != "{}" {
		t.Errorf("decodeText = %q %v", s, err)
	}
	if _, err := decodeText(le.AppendUint32(nil, 3)); !errors.Is(err, errFrame) {
		t.Errorf("decodeText of a cut text: %v, want errFrame", err)
	}
}

// FuzzDecodeTensors checks that no payload a worker sends panics the
// replica, and that what decodes is well formed.
func FuzzDecodeTensors(f *testing.F) {
	bufs, _, _ := inferFrame(1, sampleTensors())
	f.Add(bytes.Join(bufs, nil)[4+bodyHeader:])
	f.Add(payload(tensorBytes("s", "BYTES", []int64{2}, append(le.AppendUint32(nil, 1), 'a', 0, 0, 0, 0))))
	f.Fuzz(func(t *testing.T, p []byte) {
		ts, err := decodeTensors(p)
		if err != nil {
			return
		}
		for _, tt := range ts {
			if err := tt.Check(); err != nil {
				t.Errorf("decoded tensor is not well formed: %v", err)
			}
		}
	})
}

func TestNextBackoff(t *testing.T) {
	tests := []struct {
		prev, uptime, want string
	}{
		{"0s", "0s", "100ms"},     // the first restart
		{"100ms", "1s", "200ms"},  // crashed again soon
		{"8s", "0s", "10s"},       // capped
		{"10s", "0s", "10s"},      // stays capped
		{"10s", "30s", "100ms"},   // it ran stably: start over
		{"400ms", "29s", "800ms"}, // not stable yet
	}
	for _, tt := range tests {
		got := nextBackoff(mustDuration(t, tt.prev), mustDuration(t, tt.uptime))
		if got != mustDuration(t, tt.want) {
			t.Errorf("nextBackoff(%s, %s) = %v, want %s", tt.prev, tt.uptime, got, tt.want)
		}
	}
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
