package home

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// TestAsyncPayloadsShared: processes that share one queue need not all
// spill. One opened with --async-payloads (a cluster's gateway) keeps a
// body over the inline limit in that store; one opened without a location
// (the operator's jobs, a gateway without the flag) keeps its own bodies
// inline but reads the spilled ones back where their URIs point, instead
// of taking them for empty bodies, and deletes them with their records.
func TestAsyncPayloadsShared(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	var flags AsyncFlags
	f := pflag.NewFlagSet("gateway", pflag.ContinueOnError)
	flags.AddFlags(f, "off")
	blobs := filepath.Join(dir, "payloads")
	if err := f.Parse([]string{"--async-payloads", "file://" + blobs}); err != nil {
		t.Fatal(err)
	}
	spilling, closeS, err := flags.Open(ctx, st, "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer closeS()
	inline, closeI, err := AsyncFlags{}.Open(ctx, st, "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer closeI()

	big := bytes.Repeat([]byte("x"), queue.DefaultInlineMax+1)
	now := time.Now().UTC().Truncate(time.Microsecond)
	req := func(id string, body []byte) queue.Request {
		return queue.Request{ID: id, Tenant: "t", Deployment: "d", ContentType: "application/json", Body: body,
			CreatedAt: now, Deadline: now.Add(time.Hour), ResultTTL: time.Hour}
	}
	// Enqueued spilled by the one, run by the other: the worker gets the
	// whole body.
	id := queue.NewID()
	if err := spilling.Enqueue(ctx, req(id, big)); err != nil {
		t.Fatal(err)
	}
	if n := countFiles(t, blobs); n != 1 {
		t.Fatalf("%d blobs under --async-payloads after a spilled enqueue, want 1", n)
	}
	rs, err := inline.Claim(ctx, "d", 1, time.Minute)
	if err != nil || len(rs) != 1 {
		t.Fatalf("claim without a location: %d requests, %v", len(rs), err)
	}
	if !bytes.Equal(rs[0].Body, big) {
		t.Fatalf("claimed without a location: a body of %d bytes, want the %d spilled", len(rs[0].Body), len(big))
	}
	// Completed spilled by the one, read by the other (the operator's jobs
	// reading a gateway's result).
	if ok, err := spilling.Complete(ctx, id, rs[0].LeaseToken, queue.Result{Status: 200, ContentType: "application/json", Body: big}); err != nil || !ok {
		t.Fatalf("complete: %v, %v", ok, err)
	}
	rec, err := inline.Get(ctx, "t", id)
	if err != nil || rec.Result == nil || !bytes.Equal(rec.Result.Body, big) {
		t.Fatalf("result read without a location: %+v, %v; want the %d bytes spilled", rec.Result, err, len(big))
	}
	// The one without a location keeps its own bodies inline.
	if err := inline.Enqueue(ctx, req(queue.NewID(), big)); err != nil {
		t.Fatalf("enqueue of %d bytes without a location: %v", len(big), err)
	}
	if n := countFiles(t, blobs); n != 2 {
		t.Fatalf("%d blobs after an inline enqueue, want the 2 of the spilled request", n)
	}
	// Its sweep deletes the spilled bodies with their records.
	if _, err := inline.DeleteExpired(ctx, now.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := countFiles(t, blobs); n != 0 {
		t.Errorf("%d blobs left after their records were swept, want 0", n)
	}
	if _, err := inline.Get(ctx, "t", id); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("swept record: %v, want not found", err)
	}
}

// TestAsyncPayloadsFlag: --async-payloads is on the flags of both homes,
// and names the store where the default would be the artifacts'.
func TestAsyncPayloadsFlag(t *testing.T) {
	var flags AsyncFlags
	f := pflag.NewFlagSet("up", pflag.ContinueOnError)
	flags.AddFlags(f, "off")
	if fl := f.Lookup("async-payloads"); fl == nil || !strings.Contains(fl.Usage, "s3://") {
		t.Fatalf("no --async-payloads flag naming an s3:// location: %+v", fl)
	}
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	flags.Payloads = filepath.Join(dir, "elsewhere")
	q, closeQ, err := flags.Open(t.Context(), st, "file://"+filepath.Join(dir, "artifacts"), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer closeQ()
	now := time.Now()
	if err := q.Enqueue(t.Context(), queue.Request{ID: queue.NewID(), Deployment: "d", Body: bytes.Repeat([]byte("y"), queue.DefaultInlineMax+1),
		CreatedAt: now, Deadline: now.Add(time.Hour), ResultTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if countFiles(t, flags.Payloads) != 1 || countFiles(t, filepath.Join(dir, "artifacts")) != 0 || countFiles(t, filepath.Join(dir, "async")) != 0 {
		t.Errorf("the spilled body is not (only) under --async-payloads %s", flags.Payloads)
	}
}

// countFiles counts the regular files under dir (none when it is missing).
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return n
}
