package replicacmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/artifact/artifacttest"
	"github.com/ebb-ml/ebb/internal/artifact/s3"
	"github.com/ebb-ml/ebb/internal/serving/core"
)

func TestFetchBackoff(t *testing.T) {
	var got []time.Duration
	for n := 1; n <= 6; n++ {
		got = append(got, fetchBackoff(n))
	}
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 2 * time.Second, 2 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fetchBackoff(1..6) (-want +got):\n%s", diff)
	}
	if d := fetchBackoff(1 << 20); d != fetchBackoffMax {
		t.Errorf("fetchBackoff(huge) = %s, want %s", d, fetchBackoffMax)
	}
}

// A fake clock: sleep advances now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }
func (c *fakeClock) sleep(_ context.Context, d time.Duration) error {
	c.t = c.t.Add(d)
	return nil
}

func TestFetchRetrier(t *testing.T) {
	down := fmt.Errorf("S3: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	for _, tc := range []struct {
		name   string
		budget time.Duration
		errs   []error // the attempts' errors, in order; then success
		// wantAttempts and wantErr say how it ends ("" for success).
		wantAttempts int
		wantErr      string
		wantWaited   time.Duration
	}{
		{name: "first try", budget: time.Minute, wantAttempts: 1},
		{name: "store back after three failures", budget: time.Minute, errs: []error{down, down, down}, wantAttempts: 4, wantWaited: 1750 * time.Millisecond},
		{name: "missing artifact is not retried", budget: time.Minute, errs: []error{artifact.ErrNotFound}, wantAttempts: 1, wantErr: "artifact not found"},
		{name: "budget spent", budget: 3 * time.Second, errs: []error{down, down, down, down, down, down}, wantAttempts: 4,
			wantErr: "tried 4 times in 1.75s", wantWaited: 1750 * time.Millisecond},
		{name: "no retries", budget: 0, errs: []error{down}, wantAttempts: 1, wantErr: "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1e9, 0)}
			start := clock.t
			r := fetchRetrier{budget: tc.budget, now: clock.now, sleep: clock.sleep}
			attempts := 0
			got, err := r.do(t.Context(), "s3://b/k", func() (fetched, error) {
				attempts++
				if attempts <= len(tc.errs) {
					return fetched{}, tc.errs[attempts-1]
				}
				return fetched{path: "/cache/k", info: &core.ArtifactFetch{Took: core.D(time.Millisecond)}}, nil
			})
			if attempts != tc.wantAttempts {
				t.Errorf("attempts = %d, want %d", attempts, tc.wantAttempts)
			}
			if waited := clock.t.Sub(start); waited != tc.wantWaited {
				t.Errorf("waited %s, want %s", waited, tc.wantWaited)
			}
			if tc.wantErr == "" {
				if err != nil || got.path != "/cache/k" {
					t.Fatalf("got %+v, %v; want the fetched path", got, err)
				}
				// The fetch took as long as the waits, and at least the one try.
				if want := max(tc.wantWaited, time.Millisecond); got.info.Took.Duration != want {
					t.Errorf("fetch took %s, want %s", got.info.Took.Duration, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestFetchModelWaitsOutS3Outage fetches a registry artifact from a real S3
// server (versitygw) that cannot be reached when the replica starts: the
// endpoint refuses connections for 1.5 s, then forwards to the server. The
// fetch must retry and succeed; a missing artifact must still fail at once.
func TestFetchModelWaitsOutS3Outage(t *testing.T) {
	srv := artifacttest.StartS3Server(t)
	ctx := t.Context()
	store, err := s3.New("s3://"+srv.Bucket+"/models", s3.Options{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	model := []byte(`{"learner":"bytes fetched after the outage"}`)
	ref, err := store.Put(ctx, strings.NewReader(string(model)))
	if err != nil {
		t.Fatal(err)
	}

	// The endpoint the replica uses: a loopback port nothing listens on
	// until the outage ends.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("EBB_S3_ENDPOINT", "http://"+addr)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	const outage = 1500 * time.Millisecond
	proxyUp := make(chan error, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	pctx, stopProxy := context.WithCancel(ctx)
	defer stopProxy()
	wg.Go(func() {
		select {
		case <-time.After(outage):
		case <-pctx.Done():
			proxyUp <- pctx.Err()
			return
		}
		proxyUp <- forward(pctx, &wg, addr, strings.TrimPrefix(srv.Endpoint, "http://"))
	})

	flags := fetchFlags{sha256: ref.SHA256, cacheDir: t.TempDir(), cacheMaxBytes: 1 << 20, retryFor: 30 * time.Second}
	began := time.Now()
	got, err := fetchModel(ctx, nil, ref.URI, flags)
	took := time.Since(began)
	if perr := <-proxyUp; perr != nil {
		t.Fatalf("forwarder: %v", perr)
	}
	if err != nil {
		t.Fatalf("fetch across a %s outage: %v", outage, err)
	}
	defer got.close()
	if b, err := os.ReadFile(got.path); err != nil || string(b) != string(model) {
		t.Fatalf("fetched %q (%v), want the model", b, err)
	}
	if took < outage {
		t.Errorf("fetch took %s, less than the %s outage: it did not go through the outage", took, outage)
	}

	missing := flags
	missing.sha256 = strings.Repeat("ab", 32)
	missing.cacheDir = t.TempDir()
	uri := "s3://" + srv.Bucket + "/models/" + artifact.Key(missing.sha256)
	began = time.Now()
	if _, err := fetchModel(ctx, nil, uri, missing); !errors.Is(err, artifact.ErrNotFound) {
		t.Errorf("fetch of a missing artifact: err = %v, want artifact.ErrNotFound", err)
	}
	if took := time.Since(began); took > fetchBackoffMin {
		t.Errorf("fetch of a missing artifact took %s: a missing artifact must not be retried", took)
	}
}

// forward listens on addr and copies every connection to and from target
// until ctx ends.
func forward(ctx context.Context, wg *sync.WaitGroup, addr, target string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	wg.Go(func() {
		<-ctx.Done()
		ln.Close()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go func() {
					<-ctx.Done()
					c.Close()
					up.Close()
				}()
				done := make(chan struct{})
				go func() {
					_, _ = io.Copy(up, c)
					close(done)
				}()
				_, _ = io.Copy(c, up)
				<-done
			})
		}
	})
	return nil
}
