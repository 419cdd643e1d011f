package queue_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/artifact/file"
	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/queue/queuetest"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// blobFiles counts the blobs in the file store at root.
func blobFiles(t *testing.T, root string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(root, "sha256"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// TestSpilling runs payloads over the inline limit through a file artifact
// store: the queue's store keeps only their URIs, workers and clients get
// the bytes back, a losing completion's blob is deleted, and expiry
// deletes the rest.
func TestSpilling(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	clock := &queuetest.Clock{}
	s.Now = clock.Now
	inner := s.Queue(sqlstore.QueueOptions{})
	root := t.TempDir()
	blobs, err := file.New(root)
	if err != nil {
		t.Fatal(err)
	}
	q := queue.NewSpilling(inner, blobs, 64)

	big := queuetest.Request(clock, "acme", "iris")
	big.Body = bytes.Repeat([]byte("x"), 1000)
	big.ResultTTL = time.Hour
	small := queuetest.Request(clock, "acme", "iris")
	small.Body = []byte("small")
	for _, r := range []queue.Request{big, small} {
		if err := q.Enqueue(ctx, r); err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
	}
	if n := blobFiles(t, root); n != 1 {
		t.Errorf("%d blobs after enqueueing one big payload, want 1", n)
	}
	raw, err := inner.Claim(ctx, "iris", 1, time.Millisecond) // peek at what the store holds
	if err != nil || len(raw) != 1 {
		t.Fatalf("inner Claim = %d, %v", len(raw), err)
	}
	if raw[0].BodyRef == "" || len(raw[0].Body) != 0 {
		t.Errorf("the store holds a body of %d bytes and ref %q; want only a ref", len(raw[0].Body), raw[0].BodyRef)
	}
	time.Sleep(5 * time.Millisecond)

	rs, err := q.Claim(ctx, "iris", 2, time.Minute)
	if err != nil || len(rs) != 2 {
		t.Fatalf("Claim = %d, %v; want 2", len(rs), err)
	}
	if !bytes.Equal(rs[0].Body, big.Body) || !bytes.Equal(rs[1].Body, small.Body) {
		t.Errorf("claimed bodies of %d and %d bytes, want %d and %d", len(rs[0].Body), len(rs[1].Body), len(big.Body), len(small.Body))
	}
	winner := queue.Result{Status: 200, Body: bytes.Repeat([]byte("w"), 500)}
	if stored, err := q.Complete(ctx, big.ID, rs[0].LeaseToken, winner); err != nil || !stored {
		t.Fatalf("Complete = %v, %v", stored, err)
	}
	loser := queue.Result{Status: 200, Body: bytes.Repeat([]byte("l"), 500)}
	if stored, err := q.Complete(ctx, big.ID, rs[0].LeaseToken, loser); err != nil || stored {
		t.Fatalf("second Complete = %v, %v; want not stored", stored, err)
	}
	if n := blobFiles(t, root); n != 2 {
		t.Errorf("%d blobs after two big completions, want 2 (the request's, the winner's)", n)
	}
	rec, err := q.Get(ctx, "acme", big.ID)
	if err != nil || rec.Result == nil || !bytes.Equal(rec.Result.Body, winner.Body) {
		t.Fatalf("Get = %+v, %v; want the winner's body", rec.Result, err)
	}
	if _, err := q.Complete(ctx, small.ID, rs[1].LeaseToken, queue.Result{Status: 200, Body: []byte("ok")}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Hour)
	sw, err := q.DeleteExpired(ctx, clock.Now())
	if err != nil || sw.Records != 1 || len(sw.Blobs) != 2 {
		t.Errorf("DeleteExpired = %+v, %v; want the big request and its 2 blobs", sw, err)
	}
	if n := blobFiles(t, root); n != 0 {
		t.Errorf("%d blobs after expiry, want 0", n)
	}
}

// TestSpillingStoreDown: an artifact store that cannot take the payload is
// ErrUnavailable, and nothing is enqueued.
func TestSpillingStoreDown(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	inner := s.Queue(sqlstore.QueueOptions{})
	root := filepath.Join(t.TempDir(), "blobs")
	blobs, err := file.New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root+"-file", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(root)
	if err := os.Rename(root+"-file", root); err != nil { // the root is now a file: writes fail
		t.Fatal(err)
	}
	q := queue.NewSpilling(inner, blobs, 8)
	r := queuetest.Request(&queuetest.Clock{}, "", "iris")
	err = q.Enqueue(ctx, r)
	if err == nil || !strings.Contains(err.Error(), "artifact store") || !errors.Is(err, queue.ErrUnavailable) {
		t.Errorf("Enqueue with the artifact store failing = %v, want ErrUnavailable naming the artifact store", err)
	}
	if n, _ := inner.Depth(ctx, "iris"); n != 0 {
		t.Errorf("Depth = %d after a failed enqueue, want 0", n)
	}
}

// TestSpillingLostPayload: a request whose payload blob is gone completes
// with 500 saying so, rather than being claimed again forever.
func TestSpillingLostPayload(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	root := t.TempDir()
	blobs, err := file.New(root)
	if err != nil {
		t.Fatal(err)
	}
	q := queue.NewSpilling(s.Queue(sqlstore.QueueOptions{}), blobs, 8)
	r := queuetest.Request(&queuetest.Clock{}, "", "iris")
	if err := q.Enqueue(ctx, r); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(root, "sha256"))
	rs, err := q.Claim(ctx, "iris", 1, time.Minute)
	if err != nil || len(rs) != 0 {
		t.Fatalf("Claim = %d, %v; want none", len(rs), err)
	}
	rec, err := q.Get(ctx, "", r.ID)
	if err != nil || rec.Result == nil || rec.Result.Status != 500 || !strings.Contains(string(rec.Result.Body), "lost") {
		t.Errorf("Get = %+v, %v; want a 500 result saying the payload was lost", rec.Result, err)
	}
}
