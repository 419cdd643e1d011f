package batch

import (
	"context"
	"errors"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// hour is a queue delay no test reaches unless it steps the fake clock.
const hour = time.Hour

func newBatcher(t *testing.T, m Predictor, policy serving.Batching, clk Clock) *Batcher {
	t.Helper()
	b, err := New(m, policy, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBatchesFormUnderLoad sends 32 concurrent one-row requests with
// MaxBatchSize 8 and a queue delay that never runs out: the model sees four
// full batches, and every request gets the outputs of its own row.
func TestBatchesFormUnderLoad(t *testing.T) {
	before := runtime.NumGoroutine()
	m := &rowModel{}
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	b := newBatcher(t, m, serving.Batching{MaxBatchSize: 8, MaxQueueDelay: serving.D(hour)}, clk)

	const n = 32
	var wg sync.WaitGroup
	got := make([]answer, n)
	for i := range n {
		wg.Go(func() {
			out, err := b.Predict(context.Background(), rowsInput(float32(i), 1, 3), nil)
			got[i] = answer{out, err}
		})
	}
	wg.Wait()

	for i, a := range got {
		if a.err != nil {
			t.Fatalf("request %d: %v", i, a.err)
		}
		if diff := cmp.Diff(wantOutputs(float32(i), 1, 3), a.out); diff != "" {
			t.Errorf("request %d outputs (-want +got):\n%s", i, diff)
		}
	}
	if diff := cmp.Diff([]int{8, 8, 8, 8}, m.Sizes()); diff != "" {
		t.Errorf("batch sizes (-want +got):\n%s", diff)
	}
	firsts := m.Firsts()
	slices.Sort(firsts)
	want := make([]float64, n)
	for i := range want {
		want[i] = float64(i)
	}
	if diff := cmp.Diff(want, firsts); diff != "" {
		t.Errorf("rows the model saw (-want +got):\n%s", diff)
	}
	if q := b.Queued(); q != 0 {
		t.Errorf("Queued() = %d after every answer, want 0", q)
	}
	checkNoGoroutinesLeft(t, before)
}

// TestSendRules checks when a batch leaves, driven by the fake clock: each
// step sends requests (rows each) one after the other, waits until they are
// all queued or answered, optionally advances the clock, and checks the batch
// sizes the model has seen so far.
func TestSendRules(t *testing.T) {
	type step struct {
		rows    []int
		advance time.Duration
		want    []int
	}
	tests := []struct {
		name   string
		policy serving.Batching
		steps  []step
	}{
		{
			name:   "preferred size sends without waiting",
			policy: serving.Batching{MaxBatchSize: 8, PreferredBatchSizes: []int{4}, MaxQueueDelay: serving.D(hour)},
			steps:  []step{{rows: []int{1, 1, 1, 1}, want: []int{4}}},
		},
		{
			name:   "preferred size reached by multi-row requests",
			policy: serving.Batching{MaxBatchSize: 8, PreferredBatchSizes: []int{2, 6}, MaxQueueDelay: serving.D(hour)},
			steps:  []step{{rows: []int{1, 1}, want: []int{2}}, {rows: []int{3, 3}, want: []int{2, 6}}},
		},
		{
			name:   "max queue delay flushes a partial batch",
			policy: serving.Batching{MaxBatchSize: 8, MaxQueueDelay: serving.D(10 * time.Millisecond)},
			steps: []step{
				{rows: []int{1, 2}, advance: 9 * time.Millisecond, want: nil},
				{rows: []int{1}, advance: time.Millisecond, want: []int{4}},
			},
		},
		{
			name:   "zero delay sends at once",
			policy: serving.Batching{MaxBatchSize: 8},
			steps:  []step{{rows: []int{1}, want: []int{1}}, {rows: []int{2}, want: []int{1, 2}}},
		},
		{
			name:   "full when the next request does not fit",
			policy: serving.Batching{MaxBatchSize: 4, MaxQueueDelay: serving.D(hour)},
			steps:  []step{{rows: []int{3}, want: nil}, {rows: []int{2}, want: []int{3}}, {rows: []int{2}, want: []int{3, 4}}},
		},
		{
			name:   "larger than max runs alone",
			policy: serving.Batching{MaxBatchSize: 4, MaxQueueDelay: serving.D(hour)},
			steps:  []step{{rows: []int{6}, want: []int{6}}},
		},
		{
			name:   "larger than max behind others sends them first",
			policy: serving.Batching{MaxBatchSize: 4, MaxQueueDelay: serving.D(hour)},
			steps:  []step{{rows: []int{1}, want: nil}, {rows: []int{9}, want: []int{1, 9}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			m := &rowModel{}
			clk := clocktesting.NewFakeClock(time.Unix(0, 0))
			b := newBatcher(t, m, tt.policy, clk)
			var answers []<-chan answer
			var rowsSent []int
			for i, s := range tt.steps {
				for _, rows := range s.rows {
					first := float32(sum(rowsSent))
					answers = append(answers, goPredict(context.Background(), b, rowsInput(first, rows, 2), nil))
					rowsSent = append(rowsSent, rows)
					// One at a time, so the arrival order is known.
					waitFor(t, "the request to be queued or sent", func() bool {
						return queuedRows(b)+sum(m.Sizes()) == sum(rowsSent)
					})
				}
				if s.advance > 0 {
					clk.Step(s.advance)
				}
				want := sum(s.want)
				waitFor(t, "the expected rows to reach the model", func() bool { return sum(m.Sizes()) >= want })
				if diff := cmp.Diff(s.want, m.Sizes(), cmpopts.EquateEmpty()); diff != "" {
					t.Fatalf("after step %d, batch sizes (-want +got):\n%s", i, diff)
				}
			}
			// Flush what remains, then check every answer.
			clk.Step(hour)
			first := float32(0)
			for i, ch := range answers {
				a := <-ch
				if a.err != nil {
					t.Fatalf("request %d: %v", i, a.err)
				}
				if diff := cmp.Diff(wantOutputs(first, rowsSent[i], 2), a.out); diff != "" {
					t.Errorf("request %d outputs (-want +got):\n%s", i, diff)
				}
				first += float32(rowsSent[i])
			}
			checkNoGoroutinesLeft(t, before)
		})
	}
}

// queuedRows returns the rows of every queued request.
func queuedRows(b *Batcher) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, g := range b.groups {
		for _, r := range g.reqs {
			n += r.rows
		}
	}
	return n
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// TestCancelWhileQueued checks that a request whose context ends while it
// waits for a batch leaves the queue at once and never reaches the model.
func TestCancelWhileQueued(t *testing.T) {
	t.Run("the others batch without it", func(t *testing.T) {
		before := runtime.NumGoroutine()
		m := &rowModel{}
		clk := clocktesting.NewFakeClock(time.Unix(0, 0))
		b := newBatcher(t, m, serving.Batching{MaxBatchSize: 4, MaxQueueDelay: serving.D(hour)}, clk)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()

		a100 := goPredict(context.Background(), b, rowsInput(100, 1, 2), nil)
		waitFor(t, "1 queued", func() bool { return b.Queued() == 1 })
		doomed := goPredict(ctx, b, rowsInput(666, 1, 2), nil)
		waitFor(t, "2 queued", func() bool { return b.Queued() == 2 })
		a101 := goPredict(context.Background(), b, rowsInput(101, 1, 2), nil)
		waitFor(t, "3 queued", func() bool { return b.Queued() == 3 })

		cancel()
		if got := <-doomed; !errors.Is(got.err, context.Canceled) {
			t.Fatalf("cancelled request returned %v, %v; want context.Canceled", got.out, got.err)
		}
		if q := b.Queued(); q != 2 {
			t.Fatalf("Queued() = %d once the cancelled request returned, want 2", q)
		}
		// Two more fill the batch of 4: the cancelled row is not in it.
		a102 := goPredict(context.Background(), b, rowsInput(102, 1, 2), nil)
		a103 := goPredict(context.Background(), b, rowsInput(103, 1, 2), nil)
		for i, ch := range []<-chan answer{a100, a101, a102, a103} {
			a := <-ch
			if a.err != nil {
				t.Fatalf("request %d: %v", i, a.err)
			}
			if diff := cmp.Diff(wantOutputs(float32(100+i), 1, 2), a.out); diff != "" {
				t.Errorf("request %d outputs (-want +got):\n%s", i, diff)
			}
		}
		if diff := cmp.Diff([]int{4}, m.Sizes()); diff != "" {
			t.Errorf("batch sizes (-want +got):\n%s", diff)
		}
		firsts := m.Firsts()
		slices.Sort(firsts)
		if diff := cmp.Diff([]float64{100, 101, 102, 103}, firsts); diff != "" {
			t.Errorf("rows the model saw (-want +got):\n%s", diff)
		}
		if q := b.Queued(); q != 0 {
			t.Errorf("Queued() = %d, want 0", q)
		}
		checkNoGoroutinesLeft(t, before)
	})

	t.Run("everyone leaves", func(t *testing.T) {
		before := runtime.NumGoroutine()
		m := &rowModel{}
		clk := clocktesting.NewFakeClock(time.Unix(0, 0))
		b := newBatcher(t, m, serving.Batching{MaxBatchSize: 4, MaxQueueDelay: serving.D(time.Second)}, clk)
		ctx, cancel := context.WithCancel(context.Background())
		var answers []<-chan answer
		for i := range 3 {
			answers = append(answers, goPredict(ctx, b, rowsInput(float32(i), 1, 2), nil))
		}
		waitFor(t, "3 queued", func() bool { return b.Queued() == 3 })
		cancel()
		for i, ch := range answers {
			if got := <-ch; !errors.Is(got.err, context.Canceled) {
				t.Errorf("request %d returned %v, %v; want context.Canceled", i, got.out, got.err)
			}
		}
		if q := b.Queued(); q != 0 {
			t.Errorf("Queued() = %d after every request left, want 0", q)
		}
		// The dispatcher and its timer are gone; the delay passing sends
		// nothing.
		checkNoGoroutinesLeft(t, before)
		clk.Step(time.Hour)
		if got := m.Sizes(); len(got) != 0 {
			t.Errorf("the model saw batches %v of cancelled requests", got)
		}
	})

	t.Run("already cancelled", func(t *testing.T) {
		m := &rowModel{}
		b := newBatcher(t, m, serving.Batching{MaxBatchSize: 4}, clocktesting.NewFakeClock(time.Unix(0, 0)))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := b.Predict(ctx, rowsInput(1, 1, 2), nil); !errors.Is(err, context.Canceled) {
			t.Errorf("Predict with a cancelled context = %v, want context.Canceled", err)
		}
		if got := m.Sizes(); len(got) != 0 {
			t.Errorf("the model saw batches %v", got)
		}
	})
}

// TestCancelWhileRunning checks that a caller whose context ends while its
// batch runs returns at once, and that the model call is cancelled only
// once every request in the batch has gone.
func TestCancelWhileRunning(t *testing.T) {
	before := runtime.NumGoroutine()
	g := newGate()
	m := &rowModel{hold: g.hold}
	b := newBatcher(t, m, serving.Batching{MaxBatchSize: 2, MaxQueueDelay: serving.D(hour)}, clocktesting.NewFakeClock(time.Unix(0, 0)))
	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	a1 := goPredict(ctx1, b, rowsInput(1, 1, 2), nil)
	a2 := goPredict(ctx2, b, rowsInput(2, 1, 2), nil)
	modelCtx := <-g.entered

	cancel1()
	if got := <-a1; !errors.Is(got.err, context.Canceled) {
		t.Fatalf("first request returned %v, %v; want context.Canceled", got.out, got.err)
	}
	if err := modelCtx.Err(); err != nil {
		t.Fatalf("the model call was cancelled (%v) while another request still waits for it", err)
	}
	cancel2()
	// Every caller gone: the model call is cancelled.
	select {
	case <-modelCtx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the model call was not cancelled once every request in its batch was")
	}
	// The second caller gets ctx's error, or the answer if the model
	// finished first.
	if got := <-a2; !errors.Is(got.err, context.Canceled) && got.err != nil {
		t.Fatalf("second request returned %v, %v; want context.Canceled or its answer", got.out, got.err)
	}
	checkNoGoroutinesLeft(t, before)
}

// TestIncompatibleRequestsDoNotShare checks that requests whose non-batch
// dimensions, datatypes or requested outputs differ go in different batches,
// and that each still gets its own answer.
func TestIncompatibleRequestsDoNotShare(t *testing.T) {
	fp64 := func(first float32, rows, width int) []oip.Tensor {
		in := rowsInput(first, rows, width)
		f32 := in[0].Data.([]float32)
		f64 := make([]float64, len(f32))
		for i, v := range f32 {
			f64[i] = float64(v)
		}
		in[0].Datatype, in[0].Data = oip.FP64, f64
		return in
	}
	type req struct {
		width   int
		fp64    bool
		outputs []string
	}
	tests := []struct {
		name string
		reqs []req
		want []call
	}{
		{
			name: "non-batch dimensions differ",
			reqs: []req{{width: 2}, {width: 3}, {width: 2}, {width: 3}},
			want: []call{{Rows: 4, Datatype: oip.FP32, Width: 2}, {Rows: 4, Datatype: oip.FP32, Width: 3}},
		},
		{
			name: "datatypes differ",
			reqs: []req{{width: 2}, {width: 2, fp64: true}, {width: 2}, {width: 2, fp64: true}},
			want: []call{{Rows: 4, Datatype: oip.FP32, Width: 2}, {Rows: 4, Datatype: oip.FP64, Width: 2}},
		},
		{
			name: "requested outputs differ",
			reqs: []req{{width: 2, outputs: []string{"sum"}}, {width: 2}, {width: 2, outputs: []string{"sum"}}, {width: 2}},
			want: []call{{Rows: 4, Datatype: oip.FP32, Width: 2}, {Rows: 4, Datatype: oip.FP32, Width: 2}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			m := &rowModel{}
			// Batches fill at 4 rows; only full ones leave.
			b := newBatcher(t, m, serving.Batching{MaxBatchSize: 4, MaxQueueDelay: serving.D(hour)}, clocktesting.NewFakeClock(time.Unix(0, 0)))
			var answers []<-chan answer
			for i, r := range tt.reqs {
				in := rowsInput(float32(10*i), 2, r.width)
				if r.fp64 {
					in = fp64(float32(10*i), 2, r.width)
				}
				answers = append(answers, goPredict(context.Background(), b, in, r.outputs))
			}
			for i, ch := range answers {
				a := <-ch
				if a.err != nil {
					t.Fatalf("request %d: %v", i, a.err)
				}
				want := selectOutputs(wantOutputs(float32(10*i), 2, tt.reqs[i].width), tt.reqs[i].outputs)
				if diff := cmp.Diff(want, a.out); diff != "" {
					t.Errorf("request %d outputs (-want +got):\n%s", i, diff)
				}
			}
			got := m.Calls()
			slices.SortFunc(got, func(a, b call) int {
				return strings.Compare(a.Datatype, b.Datatype)*10 + int(a.Width-b.Width)
			})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("model calls (-want +got):\n%s", diff)
			}
			checkNoGoroutinesLeft(t, before)
		})
	}
}

// TestBatchErrors checks what each request of a failed batch gets.
func TestBatchErrors(t *testing.T) {
	t.Run("an input error is blamed on its request only", func(t *testing.T) {
		m := &rowModel{}
		b := newBatcher(t, m, serving.Batching{MaxBatchSize: 4, MaxQueueDelay: serving.D(hour)}, clocktesting.NewFakeClock(time.Unix(0, 0)))
		var answers []<-chan answer
		for i := range 4 {
			in := rowsInput(float32(i), 1, 2)
			if i == 2 {
				in[0].Data.([]float32)[1] = float32(math.NaN())
			}
			answers = append(answers, goPredict(context.Background(), b, in, nil))
		}
		for i, ch := range answers {
			a := <-ch
			if i == 2 {
				var ie *engine.InputError
				if !errors.As(a.err, &ie) {
					t.Errorf("request with NaN returned %v, %v; want an *engine.InputError", a.out, a.err)
				}
				continue
			}
			if a.err != nil {
				t.Errorf("request %d: %v", i, a.err)
				continue
			}
			if diff := cmp.Diff(wantOutputs(float32(i), 1, 2), a.out); diff != "" {
				t.Errorf("request %d outputs (-want +got):\n%s", i, diff)
			}
		}
		if diff := cmp.Diff([]int{4, 1, 1, 1, 1}, m.Sizes()); diff != "" {
			t.Errorf("batch sizes (-want +got):\n%s", diff)
		}
	})

	tests := []struct {
		name    string
		model   *rowModel
		wantErr string
	}{
		{name: "outputs that do not follow the batch", model: &rowModel{badRows: 1}, wantErr: "does not follow the batch"},
		{name: "a panic", model: &rowModel{hold: func(context.Context) { panic("boom") }}, wantErr: "internal error in the model engine: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBatcher(t, tt.model, serving.Batching{MaxBatchSize: 2, MaxQueueDelay: serving.D(hour)}, clocktesting.NewFakeClock(time.Unix(0, 0)))
			a1 := goPredict(context.Background(), b, rowsInput(1, 1, 2), nil)
			a2 := goPredict(context.Background(), b, rowsInput(2, 1, 2), nil)
			for i, ch := range []<-chan answer{a1, a2} {
				if a := <-ch; a.err == nil || !strings.Contains(a.err.Error(), tt.wantErr) {
					t.Errorf("request %d returned %v, %v; want an error containing %q", i, a.out, a.err, tt.wantErr)
				}
			}
		})
	}
}

// TestPredictRejects checks requests that cannot join a batch: they fail at
// once with an *engine.InputError and never reach the queue.
func TestPredictRejects(t *testing.T) {
	x := func(shape []int64, data any) oip.Tensor {
		return oip.Tensor{Name: "x", Datatype: oip.FP32, Shape: shape, Data: data}
	}
	tests := []struct {
		name    string
		inputs  []oip.Tensor
		wantErr string
	}{
		{name: "no inputs", wantErr: "no inputs"},
		{name: "scalar", inputs: []oip.Tensor{x([]int64{}, []float32{1})}, wantErr: "scalar"},
		{name: "no rows", inputs: []oip.Tensor{x([]int64{0, 2}, []float32{})}, wantErr: "0 rows"},
		{name: "rows disagree", inputs: []oip.Tensor{x([]int64{2}, []float32{1, 2}), {Name: "y", Datatype: oip.INT64, Shape: []int64{3}, Data: []int64{1, 2, 3}}},
			wantErr: `input "y" has 3 rows but "x" has 2`},
		{name: "data shorter than the shape", inputs: []oip.Tensor{x([]int64{2, 2}, []float32{1, 2})}, wantErr: "4 elements but data has 2"},
		{name: "unsupported data", inputs: []oip.Tensor{x([]int64{1}, []int{1})}, wantErr: "unsupported data type []int"},
		{name: "data of another datatype", inputs: []oip.Tensor{x([]int64{1}, []uint8{1})}, wantErr: "data of type []uint8 does not match datatype FP32 ([]float32)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &rowModel{}
			b := newBatcher(t, m, serving.Batching{MaxBatchSize: 4}, clocktesting.NewFakeClock(time.Unix(0, 0)))
			_, err := b.Predict(context.Background(), tt.inputs, nil)
			var ie *engine.InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Predict error = %v; want an *engine.InputError containing %q", err, tt.wantErr)
			}
			if q := b.Queued(); q != 0 {
				t.Errorf("Queued() = %d, want 0", q)
			}
		})
	}
}

func TestNewRejectsBadPolicies(t *testing.T) {
	tests := []struct {
		name    string
		policy  serving.Batching
		wantErr string
	}{
		{name: "max below 1", policy: serving.Batching{}, wantErr: "maxBatchSize must be at least 1, got 0"},
		{name: "preferred above max", policy: serving.Batching{MaxBatchSize: 4, PreferredBatchSizes: []int{8}}, wantErr: "preferred batch size 8 is outside 1..maxBatchSize (4)"},
		{name: "negative delay", policy: serving.Batching{MaxBatchSize: 4, MaxQueueDelay: serving.D(-time.Second)}, wantErr: "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(&rowModel{}, tt.policy, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New error = %v; want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
