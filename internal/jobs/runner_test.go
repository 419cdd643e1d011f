package jobs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// runJob stores j, runs it to its end and returns it as stored.
func runJob(t *testing.T, st store.JobStore, j serving.Job, p Predictor, sc Scaler, opts Options) serving.Job {
	t.Helper()
	ctx := context.Background()
	if _, err := st.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := NewRunner(j.Name, st, p, sc, &Storage{}, opts).Run(ctx); err != nil {
		t.Fatalf("Run = %v", err)
	}
	got, err := st.GetJob(ctx, j.Name)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestRunFormats(t *testing.T) {
	const rows = 2345
	tests := []struct{ in, out string }{
		{serving.FormatCSV, serving.FormatJSONL},
		{serving.FormatJSONL, serving.FormatCSV},
		{serving.FormatParquet, serving.FormatParquet},
		{serving.FormatCSV, serving.FormatParquet},
	}
	for _, tt := range tests {
		t.Run(tt.in+" to "+tt.out, func(t *testing.T) {
			dir := t.TempDir()
			in := writeDataset(t, dir, tt.in, rows, -1)
			out := filepath.Join(dir, "out."+tt.out)
			sc := &fakeScaler{}
			model := &sumModel{}
			got := runJob(t, openStore(t, dir), testJob("scores", "file://"+in, out), model, sc, fastOptions())
			s := got.Status
			if s.Phase != serving.JobSucceeded {
				t.Fatalf("phase = %s (%s); want Succeeded", s.Phase, s.Message)
			}
			if s.RowsDone != rows || s.RowsTotal != rows || s.ChunksDone != 24 || s.ChunksTotal != 24 || s.Replicas != 0 {
				t.Errorf("status = %d/%d rows, %d/%d chunks, %d replicas; want %d rows, 24 chunks, 0 replicas",
					s.RowsDone, s.RowsTotal, s.ChunksDone, s.ChunksTotal, s.Replicas, rows)
			}
			if s.Plan == nil || s.Plan.Replicas < 1 || s.Deployment != "sum" || s.FinishedAt == nil {
				t.Errorf("status = %+v; want a plan, deployment sum, a finish time", s)
			}
			if n := model.calls.Load(); n != 24 {
				t.Errorf("the model got %d chunks; want 24", n)
			}
			checkOutput(t, readOutput(t, out, tt.out), rows, -1)
			replicas, released := sc.history()
			if len(replicas) < 2 || replicas[0] != 1 || replicas[len(replicas)-1] != 0 || len(released) != 1 {
				t.Errorf("scaler calls = %v, released %v; want 1 (the probe) first, 0 last, one release", replicas, released)
			}
			if _, err := os.Stat(filepath.Join(dir, ".out."+tt.out+".parts")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the parts directory is left: %v", err)
			}
		})
	}
}

// TestRunResume stops a job mid-run, as a crash would, leaves its parts
// log as a crash may, and runs it again from the same store: every row
// appears exactly once, in order, and only the chunks not done are sent
// again.
func TestRunResume(t *testing.T) {
	const rows, chunks = 3000, 30
	junk := []byte(`{"ebbPart":1,"id":"id","idText":true,"outputs":[{"name":"y","datatype":"FP64","width":1},{"name":"pair","datatype":"FP32","width":2}]}` +
		"\n" + `{"id":"junk","y":0,"pair":[0,0]}` + "\n")
	tests := []struct {
		name string
		// crash damages the parts log (seg, its one segment) of the
		// stopped job, whose recorded chunks are done (by index), and
		// returns how many chunks more than those not done the restart
		// sends.
		crash func(t *testing.T, parts, seg string, frames map[string]frameAt, recorded []store.JobChunk, done map[int64]bool, in *input) int
	}{
		{"stopped", func(*testing.T, string, string, map[string]frameAt, []store.JobChunk, map[int64]bool, *input) int {
			return 0
		}},
		{"torn tail", func(t *testing.T, _, seg string, frames map[string]frameAt, recorded []store.JobChunk, _ map[int64]bool, _ *input) int {
			// The last checkpointed frame torn (which no crash does
			// to a synced frame, but a disk may): a checkpoint
			// without its part is no result, and that chunk goes
			// again (with any whose frame followed it).
			last := recorded[0]
			for _, c := range recorded {
				if frames[c.ID].off > frames[last.ID].off {
					last = c
				}
			}
			at := frames[last.ID]
			if err := os.Truncate(seg, at.off+at.n-1); err != nil {
				t.Fatal(err)
			}
			return 1
		}},
		{"synced, not checkpointed", func(t *testing.T, parts, _ string, _ map[string]frameAt, _ []store.JobChunk, done map[int64]bool, in *input) int {
			// A frame of a chunk not checkpointed (synced just
			// before a crash) is sent again, and the new frame
			// read, whatever the stray one holds.
			var stray int64
			for done[stray] {
				stray++
			}
			if err := os.WriteFile(filepath.Join(parts, "0000000000000000-stray.log"), encodeFrame(in.chunkID(stray), junk), 0o644); err != nil {
				t.Fatal(err)
			}
			return 0
		}},
		{"checkpointed twice", func(t *testing.T, parts, seg string, frames map[string]frameAt, recorded []store.JobChunk, _ map[int64]bool, _ *input) int {
			// A checkpointed chunk with a second whole frame of its
			// rows in a later segment (two runners, or a frame
			// synced twice): its rows appear once.
			b, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			at := frames[recorded[0].ID]
			if err := os.WriteFile(filepath.Join(parts, "ffffffffffffffff-twice.log"), b[at.off:at.off+at.n], 0o644); err != nil {
				t.Fatal(err)
			}
			return 0
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			in := writeDataset(t, dir, serving.FormatCSV, rows, -1)
			out := filepath.Join(dir, "out.jsonl")
			st := openStore(t, dir)
			j := testJob("resume", in, out)
			ctx := context.Background()
			if _, err := st.CreateJob(ctx, j); err != nil {
				t.Fatal(err)
			}
			runCtx, stop := context.WithCancel(ctx)
			first := &sumModel{before: func(ctx context.Context, n int64) error {
				if n == 12 {
					stop() // the crash: no more chunk finishes after this one
				}
				return nil
			}}
			opts := fastOptions()
			opts.CommitChunks = 3
			err := NewRunner(j.Name, st, first, &fakeScaler{}, &Storage{}, opts).Run(runCtx)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run after the stop = %v; want context.Canceled", err)
			}
			mid, _ := st.GetJob(ctx, j.Name)
			if serving.JobFinished(mid.Status.Phase) {
				t.Fatalf("phase after the stop = %s; want it unfinished", mid.Status.Phase)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the output exists before the job is done: %v", err)
			}
			recorded, err := st.ListJobChunks(ctx, j.Name)
			if err != nil || len(recorded) == 0 || len(recorded) >= chunks {
				t.Fatalf("chunks recorded before the stop = %d, %v; want some", len(recorded), err)
			}
			parts := filepath.Join(dir, ".out.jsonl.parts")
			segs, _ := filepath.Glob(filepath.Join(parts, "*.log"))
			if len(segs) != 1 {
				t.Fatalf("segments of the parts log: %v; want one", segs)
			}
			frames := map[string]frameAt{}
			if err := scanFile(segs[0], filepath.Base(segs[0]), frames); err != nil {
				t.Fatal(err)
			}
			done := map[int64]bool{}
			for _, c := range recorded {
				done[c.Index] = true
				if _, ok := frames[c.ID]; !ok {
					t.Fatalf("checkpointed chunk %s has no whole frame in the log", c.ID)
				}
			}
			in2, err := openInput(ctx, &Storage{}, j.Spec)
			if err != nil {
				t.Fatal(err)
			}
			extra := tt.crash(t, parts, segs[0], frames, recorded, done, in2)

			// The restart: another process, the same store and files.
			second := &sumModel{}
			st2 := openStore(t, dir)
			if err := NewRunner(j.Name, st2, second, &fakeScaler{}, &Storage{}, opts).Run(ctx); err != nil {
				t.Fatal(err)
			}
			got, _ := st2.GetJob(ctx, j.Name)
			if got.Status.Phase != serving.JobSucceeded || got.Status.RowsDone != rows {
				t.Fatalf("after the restart: %s (%s), %d rows; want Succeeded, %d", got.Status.Phase, got.Status.Message, got.Status.RowsDone, rows)
			}
			if want := int64(chunks - len(recorded) + extra); second.calls.Load() != want {
				t.Errorf("the restart sent %d chunks; want %d (%d not done, %d more)", second.calls.Load(), want, chunks-len(recorded), extra)
			}
			checkOutput(t, readOutput(t, out, serving.FormatJSONL), rows, -1)
			if _, err := os.Stat(parts); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the parts log is left: %v", err)
			}
		})
	}
}

func TestRunBadRows(t *testing.T) {
	const rows, bad = 500, 57
	for _, format := range []string{serving.FormatCSV, serving.FormatJSONL} {
		t.Run(format+" fail", func(t *testing.T) {
			dir := t.TempDir()
			in := writeDataset(t, dir, format, rows, bad)
			got := runJob(t, openStore(t, dir), testJob("bad", in, filepath.Join(dir, "out.jsonl")), &sumModel{}, &fakeScaler{}, fastOptions())
			want := `row 57: column "b" (tensor "x", FP32): "oops" is not a number`
			if got.Status.Phase != serving.JobFailed || !strings.Contains(got.Status.Message, want) {
				t.Errorf("status = %s: %q; want Failed: ...%s...", got.Status.Phase, got.Status.Message, want)
			}
		})
		t.Run(format+" skip", func(t *testing.T) {
			dir := t.TempDir()
			in := writeDataset(t, dir, format, rows, bad)
			out := filepath.Join(dir, "out.jsonl")
			j := testJob("bad", in, out)
			j.Spec.OnBadRow = serving.BadRowSkip
			got := runJob(t, openStore(t, dir), j, &sumModel{}, &fakeScaler{}, fastOptions())
			s := got.Status
			if s.Phase != serving.JobSucceeded || s.RowsSkipped != 1 || len(s.BadRows) != 1 || !strings.Contains(s.BadRows[0], "row 57") {
				t.Fatalf("status = %s (%s), %d skipped %q; want Succeeded, row 57 skipped", s.Phase, s.Message, s.RowsSkipped, s.BadRows)
			}
			checkOutput(t, readOutput(t, out, serving.FormatJSONL), rows, bad)
		})
	}
}

func TestRunSchemaMismatch(t *testing.T) {
	dir := t.TempDir()
	in := writeDataset(t, dir, serving.FormatCSV, 10, -1)
	j := testJob("schema", in, filepath.Join(dir, "out.jsonl"))
	j.Spec.Input.Columns[1].Columns = []string{"c", "d"}
	sc := &fakeScaler{}
	got := runJob(t, openStore(t, dir), j, &sumModel{}, sc, fastOptions())
	want := `column "d" (of tensor "z") is not in the input: it has id, a, b, c, unused`
	if got.Status.Phase != serving.JobFailed || !strings.Contains(got.Status.Message, want) {
		t.Errorf("status = %s: %q; want Failed: ...%s", got.Status.Phase, got.Status.Message, want)
	}
	if replicas, _ := sc.history(); len(replicas) != 0 {
		t.Errorf("replicas asked for = %v; want none: the input is checked first", replicas)
	}
}

// TestRunRefused probes a model slower than the deadline allows on the
// lease's one replica: the job is refused with the numbers, and hands its
// replica back.
func TestRunRefused(t *testing.T) {
	dir := t.TempDir()
	in := writeDataset(t, dir, serving.FormatCSV, 2000, -1)
	clock := &stepClock{t: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)}
	model := &sumModel{before: func(context.Context, int64) error {
		clock.advance(time.Second) // 100 rows a second
		return nil
	}}
	j := testJob("refused", in, filepath.Join(dir, "out.jsonl"))
	j.Spec.Deployment, j.Spec.Serving = "", &serving.Spec{Model: "m.json"}
	j.Spec.Deadline = clock.Now().Add(10 * time.Second)
	j.Spec.Lease.MaxReplicas = 1
	opts := fastOptions()
	opts.Clock = clock
	sc := &fakeScaler{}
	got := runJob(t, openStore(t, dir), j, model, sc, opts)
	s := got.Status
	// 1800 rows left at 90 rows/s (100 less the headroom) in the 8 s left
	// need 3 replicas.
	if s.Phase != serving.JobRefused || !strings.Contains(s.Message, "it needs 3 replicas and the lease allows 1") {
		t.Fatalf("status = %s: %q; want Refused, needing 3 replicas of 1", s.Phase, s.Message)
	}
	if s.Refusal == nil || s.Refusal.NeededReplicas != 3 || s.Refusal.AllowedReplicas != 1 || s.Refusal.Rows != 1800 {
		t.Errorf("refusal = %+v; want 1800 rows needing 3 replicas of 1", s.Refusal)
	}
	replicas, released := sc.history()
	if len(replicas) != 2 || replicas[0] != 1 || replicas[1] != 0 || len(released) != 1 || released[0] != "job-refused" {
		t.Errorf("scaler = %v, released %v; want the probe's replica, then none, and the job's deployment released", replicas, released)
	}
	if model.calls.Load() != 2 {
		t.Errorf("the model got %d chunks; want the probe's 2", model.calls.Load())
	}
}

// TestRunBudgetSpent runs a model that slows down after the probe: the
// replica-hours run out and the job fails, saying so.
func TestRunBudgetSpent(t *testing.T) {
	tests := []struct {
		name  string
		lease serving.Lease
		gpus  int64 // per replica of the fed deployment
		msg   string
	}{
		{"replica-hours", serving.Lease{MaxReplicas: 4, MaxReplicaHours: 0.05}, 0, "of 0.05 replica-hours used"},
		{"replica-hours, GPUs counted", serving.Lease{MaxReplicas: 4, MaxReplicaHours: 0.05}, 2, "of 0.05 replica-hours used"},
		{"GPU-hours", serving.Lease{MaxReplicas: 4, MaxReplicaHours: 100, MaxGPUHours: 0.1}, 2, "of 0.10 GPU-hours used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			in := writeDataset(t, dir, serving.FormatCSV, 3000, -1)
			clock := &stepClock{t: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)}
			model := &sumModel{before: func(ctx context.Context, n int64) error {
				if n <= 2 {
					clock.advance(time.Second)
					return nil
				}
				clock.advance(time.Minute)
				return sleep(ctx, 10*time.Millisecond)
			}}
			j := testJob("budget", in, filepath.Join(dir, "out.jsonl"))
			j.Spec.Lease = tt.lease
			opts := fastOptions()
			opts.Clock = clock
			var sc Scaler = &fakeScaler{}
			if tt.gpus > 0 {
				sc = &gpuScaler{fakeScaler: &fakeScaler{}, gpus: tt.gpus}
			}
			got := runJob(t, openStore(t, dir), j, model, sc, opts)
			s := got.Status
			if s.Phase != serving.JobFailed || !strings.Contains(s.Message, "lease budget spent") || !strings.Contains(s.Message, tt.msg) {
				t.Fatalf("status = %s: %q; want Failed: lease budget spent, %q", s.Phase, s.Message, tt.msg)
			}
			if want := s.ReplicaHours * float64(tt.gpus); math.Abs(s.GPUHours-want) > 1e-9 {
				t.Errorf("GPU-hours = %g; want %g (replica-hours %g × %d)", s.GPUHours, want, s.ReplicaHours, tt.gpus)
			}
			if tt.lease.MaxGPUHours == 0 && s.ReplicaHours < tt.lease.MaxReplicaHours {
				t.Errorf("replica-hours used = %g; want at least the budget", s.ReplicaHours)
			}
		})
	}
}

// gpuScaler is a fakeScaler whose deployment has gpus GPUs per replica.
type gpuScaler struct {
	*fakeScaler
	gpus int64
}

func (s *gpuScaler) GPUsPerReplica(context.Context, string) (int64, error) { return s.gpus, nil }

func TestRunCancel(t *testing.T) {
	dir := t.TempDir()
	in := writeDataset(t, dir, serving.FormatCSV, 3000, -1)
	out := filepath.Join(dir, "out.jsonl")
	st := openStore(t, dir)
	j := testJob("cancel", in, out)
	model := &sumModel{before: func(ctx context.Context, n int64) error {
		if n == 5 {
			_, err := st.UpdateJob(ctx, "cancel", func(j *serving.Job) error {
				j.Status.CancelRequested = true
				return nil
			})
			return err
		}
		return sleep(ctx, 2*time.Millisecond)
	}}
	sc := &fakeScaler{}
	got := runJob(t, st, j, model, sc, fastOptions())
	if got.Status.Phase != serving.JobCancelled || !got.Status.CancelRequested {
		t.Fatalf("status = %s (%s); want Cancelled", got.Status.Phase, got.Status.Message)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a cancelled job wrote its output: %v", err)
	}
	if replicas, released := sc.history(); replicas[len(replicas)-1] != 0 || len(released) != 1 {
		t.Errorf("scaler = %v, released %v; want back to 0 and released", replicas, released)
	}
}

func TestRunChunkFails(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		calls int // of chunk 2, the first to fail
	}{
		{"retried, then failed", errors.New("replica gone"), 3},
		{"permanent: not retried", fmt.Errorf("400 bad input: %w", ErrPermanent), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			in := writeDataset(t, dir, serving.FormatCSV, 1000, -1)
			model := &sumModel{before: func(ctx context.Context, n int64) error {
				if n >= 3 {
					return tt.err
				}
				return nil
			}}
			opts := fastOptions()
			opts.Retries, opts.PerReplica = 2, 1
			j := testJob("fails", in, filepath.Join(dir, "out.jsonl"))
			j.Spec.Lease.MaxReplicas = 1
			got := runJob(t, openStore(t, dir), j, model, &fakeScaler{}, opts)
			if got.Status.Phase != serving.JobFailed || !strings.Contains(got.Status.Message, "chunk 2 (rows 200 to 299) failed: "+tt.err.Error()) {
				t.Fatalf("status = %s: %q; want Failed naming the chunk and the error", got.Status.Phase, got.Status.Message)
			}
			if n := model.callsOf("-000002"); n != tt.calls {
				t.Errorf("chunk 2 was sent %d times; want %d", n, tt.calls)
			}
		})
	}
}

// TestRunWindows runs a job that does not fit one nightly window: it hands
// its replicas back when the window closes, takes them again when the
// next opens, and finishes with every row.
func TestRunWindows(t *testing.T) {
	const rows = 3000
	dir := t.TempDir()
	in := writeDataset(t, dir, serving.FormatCSV, rows, -1)
	out := filepath.Join(dir, "out.csv")
	clock := &stepClock{t: time.Date(2026, 3, 2, 22, 0, 0, 0, time.UTC)}
	// Each chunk takes half an hour; a pause lasts until the next night.
	// A chunk that ends after the window closed waits for the pause, so
	// that the job sees the window close while rows are left, however
	// fast the chunks run against the status ticks that check windows.
	handedBack := make(chan struct{})
	var pauseOnce sync.Once
	model := &sumModel{before: func(ctx context.Context, _ int64) error {
		clock.advance(30 * time.Minute)
		if h := clock.Now().Hour(); h >= 6 && h < 22 {
			select {
			case <-handedBack:
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
			}
		}
		return nil
	}}
	sc := &fakeScaler{onSet: func(n int32) {
		now := clock.Now()
		if n == 0 && now.Hour() >= 6 && now.Hour() < 22 {
			next := time.Date(now.Year(), now.Month(), now.Day(), 22, 0, 0, 0, time.UTC)
			clock.advance(next.Sub(now))
			pauseOnce.Do(func() { close(handedBack) })
		}
	}}
	j := testJob("nightly", in, out)
	j.Spec.Deadline = clock.Now().Add(72 * time.Hour)
	j.Spec.Lease = serving.Lease{MaxReplicas: 4, MaxReplicaHours: 1000, Windows: nightly}
	opts := fastOptions()
	opts.Clock = clock
	got := runJob(t, openStore(t, dir), j, model, sc, opts)
	if got.Status.Phase != serving.JobSucceeded {
		t.Fatalf("status = %s (%s); want Succeeded", got.Status.Phase, got.Status.Message)
	}
	checkOutput(t, readOutput(t, out, serving.FormatCSV), rows, -1)
	replicas, _ := sc.history()
	paused, resumed := false, false
	for _, n := range replicas {
		if n == 0 {
			paused = true
		} else if paused {
			resumed = true
		}
	}
	if !paused || !resumed {
		t.Errorf("replicas asked for = %v; want a pause (0) and a resume", replicas)
	}
	var closed bool
	for _, e := range got.Status.Events {
		closed = closed || strings.HasPrefix(e.Message, "window closed")
	}
	if !closed {
		t.Errorf("events = %+v; want a window closed", got.Status.Events)
	}
}
