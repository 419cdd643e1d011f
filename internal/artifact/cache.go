package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Opener reads stored artifacts; every Store is one. Cache owns this
// interface so that tests can count or fail reads.
type Opener interface {
	Open(ctx context.Context, uri string) (io.ReadCloser, error)
}

// CacheOptions configure a Cache.
type CacheOptions struct {
	// MaxBytes is the size budget: after a download, least recently used
	// entries that no lease holds are removed until the cache fits. Leased
	// entries are never removed, so the cache can exceed the budget while
	// they are in use. Zero means no budget.
	MaxBytes int64
	// Now is the clock used for last-access times; default time.Now.
	Now func() time.Time
	// Metrics records hits, misses, bytes and evictions; nil records
	// nothing.
	Metrics *CacheMetrics
}

// Cache keeps verified copies of artifacts in a local directory, shared by
// every process on the host that opens a Cache on the same directory (the
// replicas of one host).
//
// Layout: <dir>/sha256/ab/<sha256> holds a file artifact, <dir>/sha256/ab/
// <sha256>.d an unpacked directory artifact, <dir>/tmp partial downloads.
// An entry appears by an atomic rename only after its bytes matched the
// expected SHA-256, and entries are content-addressed, so a path, once
// there, never changes: a hit is served without reading the backend or
// re-hashing. Last access is each entry's modification time, so LRU order
// survives restarts and is shared between processes. A Lease holds a shared
// flock on its entry; eviction takes an exclusive one without waiting, so
// an entry that any process uses is never evicted.
type Cache struct {
	dir     string
	src     Opener
	max     int64
	now     func() time.Time
	metrics *CacheMetrics
	flight  singleflight.Group

	// mu guards the index, rebuilt from the directory by scanLocked.
	mu      sync.Mutex
	entries map[string]cacheEntry // by path
	total   int64
}

type cacheEntry struct {
	size       int64
	lastAccess time.Time
}

// NewCache opens the cache in dir (created if missing) over src. It builds
// its index from what the directory holds and removes abandoned partial
// downloads; it starts no goroutines.
func NewCache(dir string, src Opener, opts CacheOptions) (*Cache, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("artifact cache: %w", err)
	}
	for _, d := range []string{filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("artifact cache: %w", err)
		}
	}
	c := &Cache{dir: dir, src: src, max: opts.MaxBytes, now: opts.Now, metrics: opts.Metrics}
	c.cleanTemp()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.scanLocked(); err != nil {
		return nil, err
	}
	return c, nil
}

// Dir returns the cache directory.
func (c *Cache) Dir() string { return c.dir }

// Lease is a fetched artifact that will not be evicted until Release.
type Lease struct {
	// Path is the local file (Fetch) or directory (FetchDir). It is
	// read-only by contract: never modify it.
	Path string
	// SHA256 is the artifact's verified SHA-256.
	SHA256 string
	// Hit reports that the cache held the artifact already: this fetch
	// downloaded nothing.
	Hit bool

	c    *Cache
	lock *os.File
	once sync.Once
}

// Release lets the entry be evicted again. It is safe to call more than
// once.
func (l *Lease) Release() {
	l.once.Do(func() {
		l.lock.Close() // closing drops the flock
		l.c.mu.Lock()
		over := l.c.max > 0 && l.c.total > l.c.max
		l.c.mu.Unlock()
		if over {
			l.c.Trim()
		}
	})
}

// Fetch returns a lease on a local copy of the file artifact uri whose
// SHA-256 is want (or, when want is "", the one the URI's key names). A
// cached copy is returned without touching the backend; otherwise the
// artifact is downloaded once however many callers ask at the same time,
// verified, and moved into place. Bytes that do not match give a
// *ChecksumError and leave nothing in the cache. The caller must Release
// the lease when it no longer uses the path.
func (c *Cache) Fetch(ctx context.Context, uri, want string) (*Lease, error) {
	return c.fetch(ctx, uri, want, false)
}

// FetchDir is Fetch for a directory artifact (one stored by PutDir): the
// lease's Path is the unpacked directory.
func (c *Cache) FetchDir(ctx context.Context, uri, want string) (*Lease, error) {
	return c.fetch(ctx, uri, want, true)
}

func (c *Cache) entryPath(sum string, dir bool) string {
	p := filepath.Join(c.dir, filepath.FromSlash(Key(sum)))
	if dir {
		p += ".d"
	}
	return p
}

func (c *Cache) fetch(ctx context.Context, uri, want string, dir bool) (*Lease, error) {
	sum, err := ExpectedSHA256(uri, want)
	if err != nil {
		return nil, err
	}
	p := c.entryPath(sum, dir)
	downloaded := false
	// An entry can vanish between download and lease (evicted by another
	// process under pressure); a few rounds settle it.
	for range 3 {
		l, err := c.lease(p, sum)
		if err != nil {
			return nil, err
		}
		if l != nil {
			if downloaded {
				c.Trim()
			} else {
				c.metrics.hit()
			}
			l.Hit = !downloaded
			return l, nil
		}
		if !downloaded {
			c.metrics.miss()
		}
		ch := c.flight.DoChan(p, func() (any, error) {
			return nil, c.download(ctx, uri, sum, dir, p)
		})
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("artifact %s: %w", uri, ctx.Err())
		case res := <-ch:
			// A download cut short by another caller's context is
			// retried with ours.
			if res.Err != nil && (ctx.Err() != nil || !errors.Is(res.Err, context.Canceled) && !errors.Is(res.Err, context.DeadlineExceeded)) {
				return nil, res.Err
			}
		}
		downloaded = true
	}
	return nil, fmt.Errorf("artifact %s: the cached copy in %s kept disappearing; is the cache budget smaller than the artifacts in use?", uri, c.dir)
}

// lease opens and share-locks the entry at p, or returns nil, nil if there
// is none.
func (c *Cache) lease(p, sum string) (*Lease, error) {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("artifact cache: %w", err)
	}
	if err := lockShared(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("artifact cache: locking %s: %w", p, err)
	}
	// The entry may have been evicted between open and lock.
	held, err1 := f.Stat()
	now, err2 := os.Stat(p)
	if err1 != nil || err2 != nil || !os.SameFile(held, now) {
		f.Close()
		return nil, nil
	}
	t := c.now()
	_ = os.Chtimes(p, t, t) // last access; best effort (read-only media)
	c.mu.Lock()
	if e, ok := c.entries[p]; ok {
		e.lastAccess = t
		c.entries[p] = e
	}
	c.mu.Unlock()
	return &Lease{Path: p, SHA256: sum, c: c, lock: f}, nil
}

// download fetches uri into a private temporary directory, verifies it and
// renames it to p.
func (c *Cache) download(ctx context.Context, uri, sum string, dir bool, p string) error {
	tmp, unlock, err := c.tempDir("fetch-")
	if err != nil {
		return err
	}
	defer func() {
		os.RemoveAll(tmp)
		unlock()
	}()
	rc, err := c.src.Open(ctx, uri)
	if err != nil {
		return err
	}
	data := filepath.Join(tmp, "data")
	f, err := os.OpenFile(data, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		rc.Close()
		return fmt.Errorf("artifact cache: %w", err)
	}
	defer f.Close()
	hr := NewHashingReader(rc)
	_, err = io.Copy(f, ctxReader{ctx, hr})
	rc.Close()
	c.metrics.fetched(hr.Size())
	if err != nil {
		return fmt.Errorf("artifact %s: downloading: %w", uri, err)
	}
	if got := hr.SHA256(); got != sum {
		c.metrics.corrupt()
		return &ChecksumError{URI: uri, Want: sum, Got: got}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("artifact cache: %w", err)
	}
	src, size := data, hr.Size()
	if dir {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("artifact cache: %w", err)
		}
		src = filepath.Join(tmp, "tree")
		if err := os.Mkdir(src, 0o755); err != nil {
			return fmt.Errorf("artifact cache: %w", err)
		}
		if err := ExtractTar(f, src); err != nil {
			return fmt.Errorf("artifact %s: %w", uri, err)
		}
		if size, err = treeSize(src); err != nil {
			return fmt.Errorf("artifact cache: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("artifact cache: %w", err)
	}
	if err := os.Rename(src, p); err != nil {
		if _, serr := os.Stat(p); serr == nil {
			return nil // another process placed the same content first
		}
		return fmt.Errorf("artifact cache: %w", err)
	}
	t := c.now()
	_ = os.Chtimes(p, t, t)
	c.mu.Lock()
	if old, ok := c.entries[p]; ok {
		c.total -= old.size
	}
	c.entries[p] = cacheEntry{size: size, lastAccess: t}
	c.total += size
	c.metrics.setSize(c.total)
	c.mu.Unlock()
	return nil
}

// Trim evicts least recently used entries that no lease holds, in any
// process, until the cache fits its budget. Fetch and Release call it; it
// rescans the directory first so that entries other processes added count.
func (c *Cache) Trim() {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.scanLocked(); err != nil || c.total <= c.max {
		return
	}
	paths := make([]string, 0, len(c.entries))
	for p := range c.entries {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool {
		a, b := c.entries[paths[i]], c.entries[paths[j]]
		if !a.lastAccess.Equal(b.lastAccess) {
			return a.lastAccess.Before(b.lastAccess)
		}
		return paths[i] < paths[j]
	})
	for _, p := range paths {
		if c.total <= c.max {
			break
		}
		if c.removeIfUnused(p) {
			c.total -= c.entries[p].size
			delete(c.entries, p)
			c.metrics.evicted()
		}
	}
	c.metrics.setSize(c.total)
}

// removeIfUnused removes the entry at p unless a lease holds it.
func (c *Cache) removeIfUnused(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	if !tryLockExclusive(f) {
		return false // in use
	}
	// Move it out of view atomically, then delete at leisure; the lock
	// moves with it, so cleanTemp in another process leaves it alone.
	grave, unlock, err := c.tempDir("evict-")
	if err != nil {
		return false
	}
	defer func() {
		os.RemoveAll(grave)
		unlock()
	}()
	if err := os.Rename(p, filepath.Join(grave, "entry")); err != nil {
		return false
	}
	return true
}

// scanLocked rebuilds the index from the directory.
func (c *Cache) scanLocked() error {
	entries := map[string]cacheEntry{}
	var total int64
	root := filepath.Join(c.dir, "sha256")
	shards, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("artifact cache: %w", err)
	}
	for _, shard := range shards {
		items, err := os.ReadDir(filepath.Join(root, shard.Name()))
		if err != nil {
			continue
		}
		for _, it := range items {
			name := it.Name()
			if !ValidSHA256(strings.TrimSuffix(name, ".d")) {
				continue
			}
			p := filepath.Join(root, shard.Name(), name)
			fi, err := os.Stat(p)
			if err != nil {
				continue // evicted meanwhile
			}
			size := fi.Size()
			if fi.IsDir() {
				if size, err = treeSize(p); err != nil {
					continue
				}
			}
			entries[p] = cacheEntry{size: size, lastAccess: fi.ModTime()}
			total += size
		}
	}
	c.entries, c.total = entries, total
	c.metrics.setSize(total)
	return nil
}

// tempDir makes a private directory under <dir>/tmp, held by an exclusive
// lock until unlock.
func (c *Cache) tempDir(prefix string) (string, func(), error) {
	d, err := os.MkdirTemp(filepath.Join(c.dir, "tmp"), prefix)
	if err != nil {
		return "", nil, fmt.Errorf("artifact cache: %w", err)
	}
	f, err := os.Open(d)
	if err != nil {
		os.RemoveAll(d)
		return "", nil, fmt.Errorf("artifact cache: %w", err)
	}
	if !tryLockExclusive(f) {
		f.Close()
		os.RemoveAll(d)
		return "", nil, fmt.Errorf("artifact cache: cannot lock %s", d)
	}
	return d, func() { f.Close() }, nil
}

// cleanTemp removes partial downloads and evictions that no process holds
// (left by a crash).
func (c *Cache) cleanTemp() {
	tmp := filepath.Join(c.dir, "tmp")
	items, _ := os.ReadDir(tmp)
	for _, it := range items {
		p := filepath.Join(tmp, it.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if tryLockExclusive(f) {
			os.RemoveAll(p)
		}
		f.Close()
	}
}

// Entries returns the cached artifacts' paths, least recently used first,
// as the index knows them.
func (c *Cache) Entries() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	paths := make([]string, 0, len(c.entries))
	for p := range c.entries {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool {
		a, b := c.entries[paths[i]], c.entries[paths[j]]
		if !a.lastAccess.Equal(b.lastAccess) {
			return a.lastAccess.Before(b.lastAccess)
		}
		return paths[i] < paths[j]
	})
	return paths
}

// Size returns the bytes the index counts.
func (c *Cache) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

func treeSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// ctxReader stops a copy once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
