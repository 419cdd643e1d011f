package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ebb-ml/ebb/internal/artifact"
)

// DefaultInlineMax is the largest payload Spilling keeps in the queue's own
// store by default: below NATS's default message size of 1 MiB with room
// for the record around it, and small enough for a database row.
const DefaultInlineMax = 256 << 10

// Spilling is a Queue that keeps request and result bodies over InlineMax
// bytes in an artifact store (file:// or s3://), and only their URI in the
// queue it wraps. The artifact store is content-addressed; each blob is
// framed with its request's id, its kind and a random nonce, so no two
// writes share a blob and deleting one never takes another's. Blobs are
// read back verified against their SHA-256.
//
// A blob is written before its record and deleted after it (DeleteExpired),
// so a record never names a missing blob; a crash between the two, or a
// completion whose outcome is unknown, leaves an orphan blob, which an
// artifact store lifecycle rule may clean.
type Spilling struct {
	Queue
	blobs     artifact.Store
	inlineMax int
}

// NewSpilling returns q with payloads over inlineMax bytes (default
// DefaultInlineMax when 0) kept in blobs.
func NewSpilling(q Queue, blobs artifact.Store, inlineMax int) *Spilling {
	if inlineMax <= 0 {
		inlineMax = DefaultInlineMax
	}
	return &Spilling{Queue: q, blobs: blobs, inlineMax: inlineMax}
}

// Blob kinds in the frame.
const (
	blobRequest = "request"
	blobResult  = "result"
)

func frame(id, kind string) []byte {
	return []byte("ebb-async " + id + " " + kind + " " + NewID() + "\n")
}

// put stores body framed, returning its URI; errors wrap ErrUnavailable.
func (s *Spilling) put(ctx context.Context, id, kind string, body []byte) (string, error) {
	ref, err := s.blobs.Put(ctx, io.MultiReader(bytes.NewReader(frame(id, kind)), bytes.NewReader(body)))
	if err != nil {
		if ctx.Err() != nil {
			return "", err
		}
		return "", fmt.Errorf("store the %s body of async request %s in the artifact store: %v: %w", kind, id, err, ErrUnavailable)
	}
	return ref.URI, nil
}

// load reads back a body put stored.
func (s *Spilling) load(ctx context.Context, id, kind, uri string) ([]byte, error) {
	rc, err := artifact.OpenVerified(ctx, s.blobs, uri, "")
	if err != nil {
		return nil, s.loadErr(ctx, id, kind, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, s.loadErr(ctx, id, kind, err)
	}
	rest, ok := bytes.CutPrefix(b, []byte("ebb-async "+id+" "+kind+" "))
	_, body, found := bytes.Cut(rest, []byte("\n"))
	if !ok || !found {
		return nil, fmt.Errorf("the %s body of async request %s at %s is framed for another request", kind, id, uri)
	}
	return body, nil
}

func (s *Spilling) loadErr(ctx context.Context, id, kind string, err error) error {
	var sum *artifact.ChecksumError
	if ctx.Err() != nil || errors.As(err, &sum) || errors.Is(err, artifact.ErrNotFound) {
		return fmt.Errorf("read the %s body of async request %s: %w", kind, id, err)
	}
	return fmt.Errorf("read the %s body of async request %s from the artifact store: %v: %w", kind, id, err, ErrUnavailable)
}

// Enqueue implements Queue, storing a body over the limit as a blob first.
func (s *Spilling) Enqueue(ctx context.Context, r Request) error {
	if len(r.Body) <= s.inlineMax {
		return s.Queue.Enqueue(ctx, r)
	}
	uri, err := s.put(ctx, r.ID, blobRequest, r.Body)
	if err != nil {
		return err
	}
	r.Body, r.BodyRef = nil, uri
	if err := s.Queue.Enqueue(ctx, r); err != nil {
		// Nothing refers to the blob: best effort, the store is likely down.
		_ = s.blobs.Delete(context.WithoutCancel(ctx), uri)
		return err
	}
	return nil
}

// Claim implements Queue, reading spilled bodies back. A request whose
// body cannot be read is released for a later claim, not returned.
func (s *Spilling) Claim(ctx context.Context, deployment string, n int, lease time.Duration) ([]*Request, error) {
	rs, err := s.Queue.Claim(ctx, deployment, n, lease)
	if err != nil {
		return nil, err
	}
	out := rs[:0]
	var firstErr error
	for _, r := range rs {
		if r.BodyRef != "" {
			body, err := s.load(ctx, r.ID, blobRequest, r.BodyRef)
			switch {
			case err != nil && (errors.Is(err, ErrUnavailable) || ctx.Err() != nil):
				firstErr = cmpErr(firstErr, err)
				_ = s.Queue.Release(ctx, r.ID, r.LeaseToken, time.Now().Add(time.Second))
				continue
			case err != nil:
				// Missing or corrupt: no later claim will do better.
				_, _ = s.Queue.Complete(ctx, r.ID, r.LeaseToken, Result{Status: 500, ContentType: "text/plain",
					Body: []byte("the payload of this async request was lost: " + err.Error() + "\n")})
				continue
			}
			r.Body = body
		}
		out = append(out, r)
	}
	if len(out) == 0 && firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// Complete implements Queue, storing a result body over the limit as a
// blob first; the blob of a completion that lost (the request already had a
// result) is deleted again.
func (s *Spilling) Complete(ctx context.Context, id, token string, r Result) (bool, error) {
	if len(r.Body) <= s.inlineMax {
		return s.Queue.Complete(ctx, id, token, r)
	}
	uri, err := s.put(ctx, id, blobResult, r.Body)
	if err != nil {
		return false, err
	}
	r.Body, r.BodyRef = nil, uri
	stored, err := s.Queue.Complete(ctx, id, token, r)
	if err == nil && !stored {
		_ = s.blobs.Delete(ctx, uri) // framed with our nonce: nobody else's
	}
	return stored, err
}

// Get implements Queue, reading a spilled result body back.
func (s *Spilling) Get(ctx context.Context, tenant, id string) (Record, error) {
	rec, err := s.Queue.Get(ctx, tenant, id)
	if err != nil || rec.Result == nil || rec.Result.BodyRef == "" {
		return rec, err
	}
	body, err := s.load(ctx, id, blobResult, rec.Result.BodyRef)
	if err != nil {
		return Record{}, err
	}
	rec.Result.Body = body
	return rec, nil
}

// ClaimCallbacks implements Queue, reading spilled result bodies back.
func (s *Spilling) ClaimCallbacks(ctx context.Context, n int, lease time.Duration) ([]Callback, error) {
	cbs, err := s.Queue.ClaimCallbacks(ctx, n, lease)
	if err != nil {
		return nil, err
	}
	out := cbs[:0]
	for _, cb := range cbs {
		if cb.Result.BodyRef != "" {
			body, err := s.load(ctx, cb.ID, blobResult, cb.Result.BodyRef)
			if err != nil {
				_ = s.Queue.SettleCallback(ctx, cb.ID, cb.LeaseToken, CallbackOutcome{Retry: time.Now().Add(time.Minute), Error: err.Error()})
				continue
			}
			cb.Result.Body = body
		}
		out = append(out, cb)
	}
	return out, nil
}

// DeleteExpired implements Queue, deleting the blobs of the records it
// deleted.
func (s *Spilling) DeleteExpired(ctx context.Context, now time.Time) (Swept, error) {
	sw, err := s.Queue.DeleteExpired(ctx, now)
	for _, uri := range sw.Blobs {
		if derr := s.blobs.Delete(ctx, uri); derr != nil && err == nil {
			err = fmt.Errorf("delete expired async blob %s: %w", uri, derr)
		}
	}
	return sw, err
}
