package artifact_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/artifact/file"
)

// countingStore counts Opens and can hold them until released.
type countingStore struct {
	artifact.Store
	opens   atomic.Int64
	gate    chan struct{} // if non-nil, Open waits for it to close
	entered chan struct{} // if non-nil, Open sends on it first
}

func (c *countingStore) Open(ctx context.Context, uri string) (io.ReadCloser, error) {
	c.opens.Add(1)
	if c.entered != nil {
		c.entered <- struct{}{}
	}
	if c.gate != nil {
		<-c.gate
	}
	return c.Store.Open(ctx, uri)
}

func newFileStore(t *testing.T) *countingStore {
	t.Helper()
	s, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &countingStore{Store: s}
}

func put(t *testing.T, s artifact.Store, data string) artifact.Ref {
	t.Helper()
	ref, err := s.Put(t.Context(), strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// clock is a manual clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Minute)
	return c.t
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func fetch(t *testing.T, c *artifact.Cache, ref artifact.Ref) *artifact.Lease {
	t.Helper()
	l, err := c.Fetch(t.Context(), ref.URI, ref.SHA256)
	if err != nil {
		t.Fatalf("Fetch(%s): %v", ref.URI, err)
	}
	return l
}

func TestCacheHitDoesNotTouchTheBackend(t *testing.T) {
	s := newFileStore(t)
	ref := put(t, s, "model bytes")
	reg := prometheus.NewPedanticRegistry()
	c, err := artifact.NewCache(t.TempDir(), s, artifact.CacheOptions{Metrics: artifact.NewCacheMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	first := fetch(t, c, ref)
	first.Release()
	second := fetch(t, c, ref)
	defer second.Release()
	if first.Path != second.Path {
		t.Errorf("paths differ: %s then %s", first.Path, second.Path)
	}
	if got, err := os.ReadFile(second.Path); err != nil || string(got) != "model bytes" {
		t.Errorf("cached file = %q, %v", got, err)
	}
	if n := s.opens.Load(); n != 1 {
		t.Errorf("backend opened %d times for two fetches, want 1", n)
	}
	// The fetched bytes are gone from the backend; the cache still serves.
	if err := s.Delete(t.Context(), ref.URI); err != nil {
		t.Fatal(err)
	}
	third := fetch(t, c, ref)
	third.Release()

	got := map[string]float64{
		"hits":    metric(t, reg, "ebb_artifact_cache_hits_total"),
		"misses":  metric(t, reg, "ebb_artifact_cache_misses_total"),
		"bytes":   metric(t, reg, "ebb_artifact_cache_fetched_bytes_total"),
		"size":    metric(t, reg, "ebb_artifact_cache_size_bytes"),
		"evicted": metric(t, reg, "ebb_artifact_cache_evictions_total"),
	}
	want := map[string]float64{"hits": 2, "misses": 1, "bytes": 11, "size": 11, "evicted": 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}

// metric returns the value of the named unlabelled counter or gauge.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if m.Gauge != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestCacheConcurrentFetchesDownloadOnce(t *testing.T) {
	s := newFileStore(t)
	s.gate = make(chan struct{})
	ref := put(t, s, strings.Repeat("w", 1<<20))
	c, err := artifact.NewCache(t.TempDir(), s, artifact.CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	var started, done sync.WaitGroup
	leases := make([]*artifact.Lease, n)
	errs := make([]error, n)
	for i := range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			leases[i], errs[i] = c.Fetch(context.Background(), ref.URI, ref.SHA256)
		}()
	}
	started.Wait()
	// Give every goroutine time to reach the cache while the first
	// download is held; a slow scheduler only weakens the test, never
	// fails it wrongly (a late caller finds the entry and opens nothing).
	time.Sleep(100 * time.Millisecond)
	close(s.gate)
	done.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Fetch %d: %v", i, errs[i])
		}
		defer leases[i].Release()
		if leases[i].Path != leases[0].Path {
			t.Errorf("Fetch %d path %s, want %s", i, leases[i].Path, leases[0].Path)
		}
	}
	if got := s.opens.Load(); got != 1 {
		t.Errorf("%d concurrent fetches opened the backend %d times, want 1", n, got)
	}
}

func TestCacheEvictsLeastRecentlyUsedUnleased(t *testing.T) {
	s := newFileStore(t)
	clk := newClock()
	reg := prometheus.NewPedanticRegistry()
	dir := t.TempDir()
	const size = 1000
	refs := map[string]artifact.Ref{}
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		refs[name] = put(t, s, strings.Repeat(name, size))
	}
	c, err := artifact.NewCache(dir, s, artifact.CacheOptions{MaxBytes: 3 * size, Now: clk.Now, Metrics: artifact.NewCacheMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	// Another Cache on the same directory stands for another process.
	other, err := artifact.NewCache(dir, s, artifact.CacheOptions{MaxBytes: 3 * size, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		byPath := map[string]string{}
		for n, r := range refs {
			byPath[filepath.Join(dir, filepath.FromSlash(artifact.Key(r.SHA256)))] = n
		}
		var got []string
		for _, p := range c.Entries() {
			got = append(got, byPath[p])
		}
		return got
	}

	a := fetch(t, c, refs["a"])      // oldest, held by this process
	b := fetch(t, other, refs["b"])  // held by the other process
	fetch(t, c, refs["c"]).Release() // not held
	fetch(t, c, refs["a"]).Release() // a is used again, but a's first lease still holds it
	fetch(t, c, refs["d"]).Release() // over budget: c is the only unheld entry older than d
	if diff := cmp.Diff([]string{"b", "a", "d"}, names()); diff != "" {
		t.Errorf("after d (-want +got, least recent first):\n%s", diff)
	}
	if _, err := os.Stat(a.Path); err != nil {
		t.Errorf("held entry a was evicted: %v", err)
	}

	b.Release()
	fetch(t, c, refs["e"]).Release() // b is now the least recent unheld entry
	if diff := cmp.Diff([]string{"a", "d", "e"}, names()); diff != "" {
		t.Errorf("after e (-want +got, least recent first):\n%s", diff)
	}
	if got := metric(t, reg, "ebb_artifact_cache_evictions_total"); got != 2 {
		t.Errorf("evictions = %v, want 2", got)
	}
	if got := c.Size(); got != 3*size {
		t.Errorf("Size = %d, want %d", got, 3*size)
	}
	a.Release()
}

func TestCacheOverBudgetWhileAllHeld(t *testing.T) {
	s := newFileStore(t)
	c, err := artifact.NewCache(t.TempDir(), s, artifact.CacheOptions{MaxBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	x := fetch(t, c, put(t, s, strings.Repeat("x", 8)))
	y := fetch(t, c, put(t, s, strings.Repeat("y", 8)))
	for _, l := range []*artifact.Lease{x, y} {
		if _, err := os.Stat(l.Path); err != nil {
			t.Errorf("held entry evicted: %v", err)
		}
	}
	x.Release()
	// Releasing lets Trim bring the cache back within budget.
	if _, err := os.Stat(x.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Release the over-budget entry is still there (%v)", err)
	}
	y.Release()
	if got := c.Size(); got != 8 {
		t.Errorf("Size = %d, want 8", got)
	}
}

func TestCacheRestartRebuildsIndex(t *testing.T) {
	s := newFileStore(t)
	clk := newClock()
	dir := t.TempDir()
	c, err := artifact.NewCache(dir, s, artifact.CacheOptions{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	first, second := put(t, s, "first"), put(t, s, "second")
	fetch(t, c, second).Release()
	fetch(t, c, first).Release() // first is now the most recent
	lf, err := c.FetchDir(t.Context(), dirRef(t, s).URI, "")
	if err != nil {
		t.Fatal(err)
	}
	lf.Release()
	// A partial download abandoned by a crash.
	junk := filepath.Join(dir, "tmp", "fetch-crashed")
	if err := os.MkdirAll(junk, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(junk, "data"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}

	s.opens.Store(0)
	restarted, err := artifact.NewCache(dir, s, artifact.CacheOptions{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c.Entries(), restarted.Entries()); diff != "" {
		t.Errorf("index after restart (-before +after):\n%s", diff)
	}
	if c.Size() != restarted.Size() {
		t.Errorf("Size after restart = %d, want %d", restarted.Size(), c.Size())
	}
	fetch(t, restarted, first).Release()
	fetch(t, restarted, second).Release()
	if n := s.opens.Load(); n != 0 {
		t.Errorf("restarted cache opened the backend %d times for cached artifacts, want 0", n)
	}
	if _, err := os.Stat(junk); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("abandoned partial download %s survived the restart (%v)", junk, err)
	}
}

func dirRef(t *testing.T, s artifact.Store) artifact.Ref {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "MLmodel"), []byte("flavors: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ref, err := artifact.PutDir(t.Context(), s, src)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestCacheRefusesInconsistentReferences(t *testing.T) {
	s := newFileStore(t)
	ref := put(t, s, "real")
	other := put(t, s, "other")
	c, err := artifact.NewCache(t.TempDir(), s, artifact.CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(t.Context(), ref.URI, other.SHA256); err == nil || !strings.Contains(err.Error(), "inconsistent") {
		t.Errorf("Fetch with another artifact's sha256: error %v, want one about an inconsistent reference", err)
	}
	if n := s.opens.Load(); n != 0 {
		t.Errorf("an inconsistent reference reached the backend (%d opens)", n)
	}
	if _, err := c.Fetch(t.Context(), "file:///x/model.onnx", ""); err == nil {
		t.Error("Fetch of a URI with no sha256 and none given succeeded")
	}
}

func TestCacheCanceledCallerDoesNotFailOthers(t *testing.T) {
	s := newFileStore(t)
	s.gate = make(chan struct{})
	s.entered = make(chan struct{}, 10)
	ref := put(t, s, "slow")
	c, err := artifact.NewCache(t.TempDir(), s, artifact.CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() {
		_, err := c.Fetch(ctxA, ref.URI, "")
		errA <- err
	}()
	<-s.entered // A's download is under way and held
	type result struct {
		l   *artifact.Lease
		err error
	}
	resB := make(chan result, 1)
	go func() {
		l, err := c.Fetch(context.Background(), ref.URI, "")
		resB <- result{l, err}
	}()
	cancelA()
	if err := <-errA; !errors.Is(err, context.Canceled) {
		t.Errorf("canceled Fetch: %v, want context.Canceled", err)
	}
	close(s.gate)
	b := <-resB
	if b.err != nil {
		t.Fatalf("Fetch beside a canceled one: %v", b.err)
	}
	defer b.l.Release()
	if got, err := os.ReadFile(b.l.Path); err != nil || string(got) != "slow" {
		t.Errorf("fetched %q, %v", got, err)
	}
}

func TestCacheFetchMissing(t *testing.T) {
	s := newFileStore(t)
	ref := put(t, s, "gone")
	if err := s.Delete(t.Context(), ref.URI); err != nil {
		t.Fatal(err)
	}
	c, err := artifact.NewCache(t.TempDir(), s, artifact.CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(t.Context(), ref.URI, ""); !errors.Is(err, artifact.ErrNotFound) {
		t.Errorf("Fetch of a deleted artifact: %v, want ErrNotFound", err)
	}
	if got := c.Entries(); len(got) != 0 {
		t.Errorf("entries after a failed fetch: %q", got)
	}
}
