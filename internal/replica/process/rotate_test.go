package process_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/replica/process"
	clocktesting "k8s.io/utils/clock/testing"
)

// TestLogsRotateAndPrune runs a real replica with a tiny log cap: its log
// is rotated while it runs (and a follower keeps up across the truncation),
// and all its files are removed once it has been gone for the retention.
func TestLogsRotateAndPrune(t *testing.T) {
	model, err := filepath.Abs("../../../examples/diabetes/model.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	clk := clocktesting.NewFakePassiveClock(time.Now())
	b, err := process.New(process.Options{Command: []string{ebbBin, "replica"}, LogDir: dir,
		LogMaxBytes: 1, LogKeep: 2, LogRetention: time.Hour, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const id = "rot-abc123"
	h, err := b.Start(ctx, replica.Spec{ID: id, Deployment: "rot", Model: model, Engine: "trees"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop(context.Background(), h)
	if _, err := b.Ready(ctx, h); err != nil {
		t.Fatal(err)
	}
	current := filepath.Join(dir, id+".log")
	before, err := os.ReadFile(current)
	if err != nil || len(before) == 0 {
		t.Fatalf("replica log %s: %q, %v; want its startup output", current, before, err)
	}
	follow, err := b.Logs(ctx, h, replica.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer follow.Close()
	type result struct {
		b   []byte
		err error
	}
	followed := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(follow)
		followed <- result{b, err}
	}()
	time.Sleep(300 * time.Millisecond) // it has read the output so far

	if err := b.MaintainLogs(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(current + ".1"); !bytes.HasPrefix(got, before) {
		t.Errorf("%s.1 = %q; want the output before the rotation", current, got)
	}
	for range 3 { // more rotations than LogKeep
		appendFile(t, current, "more output\n")
		if err := b.MaintainLogs(); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := os.ReadFile(current + ".2"); string(got) != "more output\n" {
		t.Errorf("%s.2 = %q; want the output of an earlier rotation", current, got)
	}
	if _, err := os.Stat(current + ".3"); !os.IsNotExist(err) {
		t.Errorf("%s.3 exists (%v); want at most LogKeep=2 rotations", current, err)
	}
	if info, err := os.Stat(current); err != nil || info.Size() >= int64(len(before)) {
		t.Fatalf("%s after rotation: %v, %v; want it truncated", current, info, err)
	}

	time.Sleep(300 * time.Millisecond) // the follower saw the truncation
	// Stopping writes more output, after the truncation; the replica's
	// O_APPEND writes land at the new end, and the follower reads them.
	if err := b.Stop(ctx, h); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(current)
	if len(after) == 0 || after[0] == 0 {
		t.Fatalf("%s after stop = %q; want the shutdown output from offset 0", current, after)
	}
	r := <-followed
	if r.err != nil {
		t.Fatal(r.err)
	}
	if rest := r.b; !bytes.Contains(rest, before) || !bytes.Contains(rest, after) {
		t.Errorf("follower read %q; want the output before the rotation and the shutdown output %q after it", rest, after)
	}

	// Gone for less than the retention: kept; then removed.
	if err := b.MaintainLogs(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(current); err != nil {
		t.Fatalf("log of a replica that just ended: %v; want it kept for the retention", err)
	}
	clk.SetTime(time.Now().Add(2 * time.Hour))
	other := filepath.Join(dir, "notes.log") // not a replica's: left alone
	os.WriteFile(other, []byte("x"), 0o644)
	if err := b.MaintainLogs(); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, id+".log*"))
	if len(left) > 0 {
		t.Errorf("files %v remain after the retention", left)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("%s, not a replica log, was removed: %v", other, err)
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// Before any replica has started, the log directory does not exist yet:
// maintenance has nothing to do and is no error (ebb up used to warn at
// every start).
func TestMaintainLogsBeforeAnyReplica(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	b, err := process.New(process.Options{Command: []string{ebbBin, "replica"}, LogDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.MaintainLogs(); err != nil {
		t.Errorf("MaintainLogs without a log dir: %v", err)
	}
}
