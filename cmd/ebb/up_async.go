package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"github.com/ebb-ml/ebb/internal/artifact/backend"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/limit"
	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/queue/natsq"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// asyncFlags configure async inference (gateway.Async, queue.Worker).
type asyncFlags struct {
	store          string // "" (the SQL store) or a nats:// URL
	callbackHosts  []string
	callbackSecret string // a file holding the callbacks' signing secret
	maxBodyBytes   int64
}

func (a *asyncFlags) addFlags(f *pflag.FlagSet) {
	f.StringVar(&a.store, "async-store", "", "where async requests (Prefer: respond-async) are kept: empty for ebb's own store (SQLite, or PostgreSQL with --store-dsn), or a NATS JetStream URL (nats://host:4222)")
	f.StringSliceVar(&a.callbackHosts, strings.TrimPrefix(gateway.CallbackHostsFlag, "--"), nil, "hosts (host or host:port) that async callback URLs may name; empty, the default, allows none")
	f.StringVar(&a.callbackSecret, "async-callback-secret-file", "", "file whose content keys the HMAC-SHA256 Ebb-Signature of async callbacks (docs/async.md); default DATA-DIR/async-callback.secret, created when missing")
	f.Int64Var(&a.maxBodyBytes, strings.TrimPrefix(gateway.AsyncMaxBodyFlag, "--"), 0, "most bytes of one async request body (413 beyond it); default and at most --max-body-bytes")
}

// asyncQueue is a queue the gateway and the worker share.
type asyncQueue interface {
	queue.Queue
	gateway.AsyncQueue
}

// openAsync opens the async queue the flags name: the SQL store's (st),
// or NATS JetStream's; payloads over the inline limit go to the artifact
// store at artifacts (DATA-DIR/async when empty). close ends what it
// opened.
func (a asyncFlags) open(ctx context.Context, st any, artifacts, dataDir string) (q asyncQueue, close func(), err error) {
	var base queue.Queue
	close = func() {}
	switch {
	case a.store == "":
		sq, ok := st.(interface {
			Queue(sqlstore.QueueOptions) *sqlstore.Queue
		})
		if !ok {
			return nil, nil, fmt.Errorf("the store cannot keep async requests: give --async-store nats://...")
		}
		base = sq.Queue(sqlstore.QueueOptions{})
	case strings.HasPrefix(a.store, "nats://"), strings.HasPrefix(a.store, "tls://"):
		nc, err := nats.Connect(a.store, nats.Name("ebb async"))
		if err != nil {
			return nil, nil, fmt.Errorf("--async-store %s: %w", a.store, err)
		}
		nq, err := natsq.Open(ctx, nc, natsq.Options{})
		if err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("--async-store %s: %w", a.store, err)
		}
		base, close = nq, nc.Close
	default:
		return nil, nil, fmt.Errorf("--async-store %q: give nothing (ebb's own store) or a nats:// URL", a.store)
	}
	location := artifacts
	if location == "" {
		location = filepath.Join(dataDir, "async")
	} else {
		location = strings.TrimRight(location, "/") + "/async"
	}
	blobs, err := backend.Open(location, backend.Options{})
	if err != nil {
		close()
		return nil, nil, fmt.Errorf("async payload store %s: %w", location, err)
	}
	return queue.NewSpilling(base, blobs, 0), close, nil
}

// secret returns the callbacks' signing secret: the file's, or one made
// and kept in DATA-DIR.
func (a asyncFlags) secret(dataDir string) ([]byte, error) {
	file := a.callbackSecret
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

// asyncPace is how many async requests of a deployment the worker runs
// at once: one while it is cold (which wakes it, on the first queued
// request), its concurrency cap when it has one, and otherwise
// asyncPerReplica per ready replica — more than the autoscaler's usual
// target, so that a backlog shows as load and scales the deployment out.
func asyncPace(routes *routing.Table) func(string) int {
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

// storeLimits lists the limits of ebb's own store for a limit.Source,
// with an ETag that digests them.
type storeLimits struct {
	st interface {
		ListLimits(ctx context.Context) ([]serving.Limit, error)
	}
}

var _ limit.Lister = storeLimits{}

func (s storeLimits) ListLimitsIfChanged(ctx context.Context, etag string) ([]serving.Limit, string, bool, error) {
	ls, err := s.st.ListLimits(ctx)
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

// newLimiter returns the gateway's tenant limiter fed from lister, and the
// source that feeds it (Run it); fraction is this gateway's share of each
// limit (nil: all of it).
func newLimiter(lister limit.Lister, m *limit.Metrics, fraction func() float64, log *slog.Logger) (*limit.Limiter, *limit.Source) {
	lim := limit.New(limit.Options{Metrics: m})
	return lim, limit.NewSource(lister, lim, limit.SourceOptions{Fraction: fraction, Log: log})
}
