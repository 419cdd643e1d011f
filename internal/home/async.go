package home

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/artifact/backend"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/limit"
	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/queue/natsq"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/postgres"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// AsyncFlags configure async inference (gateway.Async, queue.Worker) in
// both homes.
type AsyncFlags struct {
	// Store is "" (ebb's own SQL store, in ebb up), a nats:// URL (NATS
	// JetStream) or a postgres:// URL (a PostgreSQL store).
	Store string
	// CallbackHosts is the callbacks' allow-list (none by default).
	CallbackHosts []string
	// CallbackSecret is a file holding the callbacks' signing secret.
	CallbackSecret string
	// MaxBodyBytes bounds an async request body; 0: --max-body-bytes.
	MaxBodyBytes int64
	// Lease is how long a worker holds a request it runs: after a crash,
	// a request in flight is run again once its lease ends.
	Lease time.Duration
	// Payloads is the artifact store location (s3://bucket/prefix,
	// file:///path, or a directory) where bodies over the queue's inline
	// limit go; "" takes the home's default (Open).
	Payloads string
}

// AddFlags adds the flags; storeHelp says what an empty --async-store
// means in this home.
func (a *AsyncFlags) AddFlags(f *pflag.FlagSet, storeHelp string) {
	f.StringVar(&a.Store, "async-store", "", "where async requests (Prefer: respond-async) are kept: a NATS JetStream URL (nats://host:4222), a PostgreSQL URL (postgres://...), or empty: "+storeHelp)
	f.StringSliceVar(&a.CallbackHosts, strings.TrimPrefix(gateway.CallbackHostsFlag, "--"), nil, "hosts (host or host:port) that async callback URLs may name; empty, the default, allows none")
	f.StringVar(&a.CallbackSecret, "async-callback-secret-file", "", "file whose content keys the HMAC-SHA256 Ebb-Signature of async callbacks (docs/async.md); ebb up: default DATA-DIR/async-callback.secret, created when missing")
	f.DurationVar(&a.Lease, "async-lease", 5*time.Minute, "how long a worker holds an async request it runs: longer than a request may take, cold start included; after a crash, requests in flight run again once it ends")
	f.Int64Var(&a.MaxBodyBytes, strings.TrimPrefix(gateway.AsyncMaxBodyFlag, "--"), 0, "most bytes of one async request body (413 beyond it); default and at most --max-body-bytes")
	f.StringVar(&a.Payloads, "async-payloads", "", "where async request and result bodies over 256 KiB are kept, an artifact store location (s3://bucket/prefix, file:///path); only their URI goes in --async-store. "+
		"Give every gateway sharing the queue the same; a process without one reads (and sweeps) theirs where their URIs point. Default: ebb up: --artifacts/async, else DATA-DIR/async; a cluster's gateway: none, bodies stay in the queue's store (NATS takes at most 1 MiB a message)")
}

// AsyncQueue is a queue the gateway and the worker share.
type AsyncQueue interface {
	queue.Queue
	gateway.AsyncQueue
}

// Open opens the async queue the flags name: st's (a SQL store; nil when
// the home has none, and async is then off without --async-store), NATS
// JetStream's or PostgreSQL's. Payloads over the inline limit go to the
// artifact store at a.Payloads, else at artifacts + "/async", else at
// DATA-DIR/async. With none of the three they are kept inline; bodies
// that other processes sharing the queue spilled are still read (and
// deleted with their records) wherever their URIs point, with the S3
// settings of the environment. close ends what it opened. A nil queue and
// no error: async is off.
func (a AsyncFlags) Open(ctx context.Context, st any, artifacts, dataDir string) (q AsyncQueue, close func(), err error) {
	var base queue.Queue
	close = func() {}
	switch {
	case a.Store == "" && st == nil:
		return nil, close, nil
	case a.Store == "":
		sq, ok := st.(interface {
			Queue(sqlstore.QueueOptions) *sqlstore.Queue
		})
		if !ok {
			return nil, nil, fmt.Errorf("the store cannot keep async requests: give --async-store nats://...")
		}
		base = sq.Queue(sqlstore.QueueOptions{})
	case strings.HasPrefix(a.Store, "nats://"), strings.HasPrefix(a.Store, "tls://"):
		nc, err := nats.Connect(a.Store, nats.Name("ebb async"))
		if err != nil {
			return nil, nil, fmt.Errorf("--async-store %s: %w", a.Store, err)
		}
		nq, err := natsq.Open(ctx, nc, natsq.Options{})
		if err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("--async-store %s: %w", a.Store, err)
		}
		base, close = nq, nc.Close
	case strings.HasPrefix(a.Store, "postgres://"), strings.HasPrefix(a.Store, "postgresql://"):
		ps, err := postgres.Open(ctx, a.Store)
		if err != nil {
			return nil, nil, fmt.Errorf("--async-store: %w", err)
		}
		base, close = ps.Queue(sqlstore.QueueOptions{}), func() { ps.Close() }
	default:
		return nil, nil, fmt.Errorf("--async-store %q: give a nats:// or postgres:// URL, or nothing", a.Store)
	}
	location := a.Payloads
	switch {
	case location != "":
	case artifacts != "":
		location = strings.TrimRight(artifacts, "/") + "/async"
	case dataDir != "":
		location = filepath.Join(dataDir, "async")
	default:
		// Payloads inline, within --async-max-body-bytes. The queue may be
		// shared with processes that spill (a cluster's gateways given
		// --async-payloads, whose results the operator's jobs read): a
		// body they spilled is read where its URI points, never taken for
		// an empty one.
		return queue.NewSpilling(base, spilledBodies{}, math.MaxInt), close, nil
	}
	location, err = dirLocation(location)
	if err != nil {
		close()
		return nil, nil, fmt.Errorf("async payload store %s: %w", location, err)
	}
	blobs, err := backend.Open(location, backend.Options{})
	if err != nil {
		close()
		return nil, nil, fmt.Errorf("async payload store %s: %w", location, err)
	}
	return queue.NewSpilling(base, blobs, 0), close, nil
}

// Secret returns the callbacks' signing secret: the file's, or one made
// and kept in dataDir; nil when neither is given.
func (a AsyncFlags) Secret(dataDir string) ([]byte, error) {
	file := a.CallbackSecret
	if file == "" && dataDir == "" {
		if len(a.CallbackHosts) > 0 {
			return nil, fmt.Errorf("--async-callback-hosts needs --async-callback-secret-file: callbacks are signed")
		}
		return nil, nil
	}
	if file == "" {
		file = filepath.Join(dataDir, "async-callback.secret")
		if _, err := os.Stat(file); os.IsNotExist(err) {
			if err := os.WriteFile(file, []byte(rand.Text()), 0o600); err != nil {
				return nil, fmt.Errorf("async callback secret: %w", err)
			}
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("async callback secret: %w", err)
	}
	return []byte(strings.TrimSpace(string(b))), nil
}

// AsyncPace is how many async requests of a deployment the worker runs
// at once: one while it is cold (which wakes it, on the first queued
// request), its concurrency cap when it has one, and otherwise
// asyncPerReplica per ready replica — more than the autoscaler's usual
// target, so that a backlog shows as load and scales the deployment out.
func AsyncPace(routes *routing.Table) func(string) int {
	return func(dep string) int {
		rt := routes.Lookup(dep)
		switch {
		case rt == nil || len(rt.Endpoints) == 0:
			return 1
		case rt.MaxConcurrency > 0:
			return rt.Capacity()
		}
		return asyncPerReplica * len(rt.Endpoints)
	}
}

const asyncPerReplica = 16

// StoreLimits lists the limits of ebb's own store for a limit.Source,
// with an ETag that digests them.
type StoreLimits struct {
	Store interface {
		ListLimits(ctx context.Context) ([]serving.Limit, error)
	}
}

var _ limit.Lister = StoreLimits{}

func (s StoreLimits) ListLimitsIfChanged(ctx context.Context, etag string) ([]serving.Limit, string, bool, error) {
	ls, err := s.Store.ListLimits(ctx)
	if err != nil {
		return nil, "", false, err
	}
	b, err := json.Marshal(ls)
	if err != nil {
		return nil, "", false, err
	}
	sum := sha256.Sum256(b)
	tag := hex.EncodeToString(sum[:16])
	if tag == etag {
		return nil, etag, false, nil
	}
	return ls, tag, true, nil
}

// NewLimiter returns the gateway's tenant limiter fed from lister, and the
// source that feeds it (Run it); fraction is this gateway's share of each
// limit (nil: all of it).
func NewLimiter(lister limit.Lister, m *limit.Metrics, fraction func() float64, log *slog.Logger) (*limit.Limiter, *limit.Source) {
	lim := limit.New(limit.Options{Metrics: m})
	return lim, limit.NewSource(lister, lim, limit.SourceOptions{Fraction: fraction, Log: log})
}

// spilledBodies reads, stats and deletes the bodies that another process
// spilled (queue.Spilling) wherever their URIs point: any file:///path,
// and any s3://bucket/key with the S3 settings of the environment. It
// stores nothing: Open gives it to a Spilling that never spills.
type spilledBodies struct{}

var _ artifact.Store = spilledBodies{}

func (spilledBodies) Put(context.Context, io.Reader) (artifact.Ref, error) {
	return artifact.Ref{}, errors.New("no async payload store (--async-payloads) to keep the body in")
}

func (spilledBodies) Open(ctx context.Context, uri string) (io.ReadCloser, error) {
	st, err := spilledStore(uri)
	if err != nil {
		return nil, err
	}
	return st.Open(ctx, uri)
}

func (spilledBodies) Stat(ctx context.Context, uri string) (artifact.Ref, error) {
	st, err := spilledStore(uri)
	if err != nil {
		return artifact.Ref{}, err
	}
	return st.Stat(ctx, uri)
}

func (spilledBodies) Delete(ctx context.Context, uri string) error {
	st, err := spilledStore(uri)
	if err != nil {
		return err
	}
	return st.Delete(ctx, uri)
}

// spilledStore is the artifact store uri is in: its bucket's, or the
// file system's.
func spilledStore(uri string) (artifact.Store, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("async payload URI %q: %v", uri, err)
	}
	switch u.Scheme {
	case "s3":
		return backend.Open("s3://"+u.Host, backend.Options{})
	case "file":
		return backend.Open("file:///", backend.Options{})
	}
	return nil, fmt.Errorf("async payload URI %q: unsupported scheme %q", uri, u.Scheme)
}

// dirLocation returns location as the artifact backends take it: a plain
// directory, relative ones included (--data-dir .ebb), as an absolute
// path; a URL (file://, s3://) as it is.
func dirLocation(location string) (string, error) {
	if strings.Contains(location, "://") {
		return location, nil
	}
	return filepath.Abs(location)
}
