package gateway

import (
	"bytes"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestMoveBody checks that the answer's body reaches the client's response
// whole, copied or swapped, and stays whole when the exchange's buffer is
// written again for the next answer.
func TestMoveBody(t *testing.T) {
	for _, n := range []int{0, 1, 150, maxCopiedBody, maxCopiedBody + 1, 1 << 20} {
		want := bytes.Repeat([]byte{'a'}, n)
		var to, from fasthttp.Response
		to.SetBody([]byte("the client's response had a body before"))
		from.SetBody(want)
		moveBody(&to, &from)
		// The exchange's buffer is reused for the next answer.
		for i, next := 0, from.Body(); i < len(next); i++ {
			next[i] = 'b'
		}
		from.Reset()
		if got := to.Body(); !bytes.Equal(got, want) {
			t.Errorf("%d bytes: the client's response has %d bytes (%.10q...), want the answer's", n, len(got), got)
		}
	}
}
