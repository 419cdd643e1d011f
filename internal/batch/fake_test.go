package batch

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
)

// rowModel is a hand-written model whose outputs depend on each input row:
// for input "x" ([-1, w], FP32 or FP64) it returns "sum" ([-1], FP64), the
// sum of each row, and "pair" ([-1, 2], FP32), each row's first element and
// its negation. It records every call, and rejects a row holding NaN with an
// *engine.InputError.
type rowModel struct {
	// hold, when set, is called at the start of every Predict; it blocks
	// to keep an instance busy.
	hold func(ctx context.Context)
	// badRows, when set, makes "sum" carry that many rows whatever the
	// batch, to break the batch contract.
	badRows int

	mu    sync.Mutex
	calls []call
	// firsts holds the first element of every row the model saw.
	firsts []float64
}

// call describes one Predict call.
type call struct {
	Rows     int
	Datatype string
	Width    int64
}

func (m *rowModel) Predict(ctx context.Context, in []oip.Tensor, _ []string) ([]oip.Tensor, error) {
	if m.hold != nil {
		m.hold(ctx)
	}
	x := in[0]
	rows, width := int(x.Shape[0]), int(x.Shape[1])
	var vals []float64
	switch d := x.Data.(type) {
	case []float32:
		for _, v := range d {
			vals = append(vals, float64(v))
		}
	case []float64:
		vals = d
	default:
		return nil, fmt.Errorf("rowModel: data %T", x.Data)
	}
	m.mu.Lock()
	m.calls = append(m.calls, call{Rows: rows, Datatype: x.Datatype, Width: int64(width)})
	for r := range rows {
		m.firsts = append(m.firsts, vals[r*width])
	}
	m.mu.Unlock()

	sum := make([]float64, rows)
	pair := make([]float32, 0, 2*rows)
	for r := range rows {
		for _, v := range vals[r*width : (r+1)*width] {
			if math.IsNaN(v) {
				return nil, &engine.InputError{Message: fmt.Sprintf("row %d holds NaN", r)}
			}
			sum[r] += v
		}
		pair = append(pair, float32(vals[r*width]), -float32(vals[r*width]))
	}
	sumRows := rows
	if m.badRows > 0 {
		sumRows = m.badRows
		sum = make([]float64, sumRows)
	}
	return []oip.Tensor{
		{Name: "sum", Datatype: oip.FP64, Shape: []int64{int64(sumRows)}, Data: sum},
		{Name: "pair", Datatype: oip.FP32, Shape: []int64{int64(rows), 2}, Data: pair},
	}, nil
}

// Calls returns the calls so far.
func (m *rowModel) Calls() []call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

// Sizes returns the rows of each call so far.
func (m *rowModel) Sizes() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	sizes := make([]int, len(m.calls))
	for i, c := range m.calls {
		sizes[i] = c.Rows
	}
	return sizes
}

// Firsts returns the first element of every row seen so far.
func (m *rowModel) Firsts() []float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.firsts)
}

// rowsInput returns input "x" of FP32 rows, each [first+i, 1, ..., 1] with
// width columns.
func rowsInput(first float32, rows, width int) []oip.Tensor {
	data := make([]float32, 0, rows*width)
	for r := range rows {
		data = append(data, first+float32(r))
		for range width - 1 {
			data = append(data, 1)
		}
	}
	return []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{int64(rows), int64(width)}, Data: data}}
}

// wantOutputs is what rowModel answers for rowsInput(first, rows, width).
func wantOutputs(first float32, rows, width int) []oip.Tensor {
	sum := make([]float64, rows)
	pair := make([]float32, 0, 2*rows)
	for r := range rows {
		v := first + float32(r)
		sum[r] = float64(v) + float64(width-1)
		pair = append(pair, v, -v)
	}
	return []oip.Tensor{
		{Name: "sum", Datatype: oip.FP64, Shape: []int64{int64(rows)}, Data: sum},
		{Name: "pair", Datatype: oip.FP32, Shape: []int64{int64(rows), 2}, Data: pair},
	}
}

// answer is what one Predict call returned.
type answer struct {
	out []oip.Tensor
	err error
}

// goPredict calls b.Predict in a goroutine and returns where its answer
// will arrive.
func goPredict(ctx context.Context, b *Batcher, in []oip.Tensor, outputs []string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		out, err := b.Predict(ctx, in, outputs)
		ch <- answer{out, err}
	}()
	return ch
}

// waitFor polls cond; the deadline only guards against a hung test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkNoGoroutinesLeft waits until no more goroutines run than before, and
// fails the test if that does not happen.
func checkNoGoroutinesLeft(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines left behind (had %d before):\n%s", runtime.NumGoroutine()-before, before, buf[:n])
		}
		time.Sleep(time.Millisecond)
	}
}

// gate holds model calls until opened.
type gate struct {
	// entered receives the context of each call that reached the gate.
	entered chan context.Context
	open    chan struct{}
}

func newGate() *gate {
	return &gate{entered: make(chan context.Context, 100), open: make(chan struct{})}
}

// hold is a rowModel.hold that waits for the gate to open or ctx to end.
func (g *gate) hold(ctx context.Context) {
	g.entered <- ctx
	select {
	case <-g.open:
	case <-ctx.Done():
	}
}
