package oip

import (
	"bytes"
	"testing"
)

// FuzzFromRaw reads raw tensor data as binary tensor data and gRPC raw
// contents arrive: FromRaw never panics, allocates in proportion to the
// bytes received whatever the shape declares, and what it accepts passes
// Check and writes back as the same bytes.
func FuzzFromRaw(f *testing.F) {
	f.Add(uint8(11), int64(2), int64(1), []byte{0, 0, 128, 63, 0, 0, 0, 64})
	f.Add(uint8(13), int64(1), int64(1), []byte{2, 0, 0, 0, 'h', 'i'})
	f.Add(uint8(0), int64(1<<20), int64(1<<10), []byte{1})
	f.Fuzz(func(t *testing.T, dt uint8, d0, d1 int64, b []byte) {
		datatype := Datatypes[int(dt)%len(Datatypes)]
		shape := []int64{d0, d1}
		var tensor Tensor
		var err error
		if got := allocated(func() { tensor, err = FromRaw(datatype, shape, b) }); got > 64*uint64(len(b))+1<<16 {
			t.Fatalf("FromRaw of %d bytes for shape %v allocated %d bytes", len(b), shape, got)
		}
		if err != nil {
			return
		}
		if err := tensor.Check(); err != nil {
			t.Fatalf("FromRaw accepted a tensor that Check refuses: %v", err)
		}
		again, err := RawBytes(tensor)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("raw data changed on a round trip:\n%v\n%v", b, again)
		}
	})
}
