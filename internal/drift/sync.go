package drift

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Deployments lists the deployments to watch; the SQL store in ebb up,
// the ModelDeployments on the operator.
type Deployments interface {
	ListDeployments(ctx context.Context) ([]serving.Deployment, error)
}

// Registry resolves a deployment's model references and reads versions'
// profiles; *registry.Service is one.
type Registry interface {
	ResolveAll(ctx context.Context, refs []registry.Ref) (map[registry.Ref]registry.Version, error)
	VersionProfile(ctx context.Context, v registry.Version) (*monitor.Profile, string, error)
}

// Served lists the versions that served each deployment lately, all in
// one read; registry.Store is one.
type Served interface {
	LastServedAll(ctx context.Context, n int) (map[string][]registry.ServingRecord, error)
}

// Syncer works out what to watch, every deployment × version with a
// profile, and hands it to Apply (Monitor.Set, Hub.Set). The versions of
// a deployment are those its spec names (spec.model and each traffic
// target, aliases resolved) and, when Served is set, the last
// LastServed versions that served it, so the version a rollout moves away
// from stays watched while it still answers. Profiles are read once per
// profile ID.
type Syncer struct {
	Deployments Deployments
	Registry    Registry
	Served      Served
	// LastServed is how many recently served versions stay watched;
	// default 2.
	LastServed int
	Apply      func([]Entry)
	// Every is the period of Run; default 10s. MinGap is the least time
	// between two syncs Wake asks for; default 1s.
	Every, MinGap time.Duration
	Clock         clock.WithTicker
	Log           *slog.Logger

	wakeOnce sync.Once
	wake     chan struct{}
	// cache holds the profiles read, by ID; Sync (one at a time) owns it.
	cache map[string]*monitor.Profile
}

func (s *Syncer) init() {
	s.wakeOnce.Do(func() { s.wake = make(chan struct{}, 1) })
}

// Wake asks Run for a sync soon (after MinGap since the last one); it
// never blocks.
func (s *Syncer) Wake() {
	s.init()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run syncs now, then every Every and when woken, until ctx ends.
func (s *Syncer) Run(ctx context.Context) error {
	s.init()
	clk := s.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	every, gap := s.Every, s.MinGap
	if every <= 0 {
		every = 10 * time.Second
	}
	if gap <= 0 {
		gap = time.Second
	}
	log := s.Log
	if log == nil {
		log = slog.Default()
	}
	t := clk.NewTicker(every)
	defer t.Stop()
	var (
		last    time.Time
		later   clock.Timer
		laterCh <-chan time.Time
	)
	doSync := func() {
		last = clk.Now()
		if err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			log.Warn("drift: cannot work out the profiles to watch; keeping the last ones", "err", err)
		}
	}
	doSync()
	for {
		select {
		case <-ctx.Done():
			if later != nil {
				later.Stop()
			}
			return nil
		case <-t.C():
			doSync()
		case <-laterCh:
			laterCh, later = nil, nil
			doSync()
		case <-s.wake:
			if wait := gap - clk.Since(last); wait > 0 {
				if later == nil {
					later = clk.NewTimer(wait)
					laterCh = later.C()
				}
				continue
			}
			doSync()
		}
	}
}

// Sync works out the entries and applies them. A model reference that
// names nothing now (a deleted alias) is left out; a failure to list
// deployments or to read the registry applies nothing and is returned.
func (s *Syncer) Sync(ctx context.Context) error {
	entries, err := s.Entries(ctx)
	if err != nil {
		return err
	}
	s.Apply(entries)
	return nil
}

// Entries works out what to watch.
func (s *Syncer) Entries(ctx context.Context) ([]Entry, error) {
	deps, err := s.Deployments.ListDeployments(ctx)
	if err != nil {
		return nil, err
	}
	var served map[string][]registry.ServingRecord
	if s.Served != nil {
		n := s.LastServed
		if n <= 0 {
			n = 2
		}
		if served, err = s.Served.LastServedAll(ctx, n); err != nil && s.Log != nil {
			s.Log.Warn("drift: cannot read the versions that served the deployments lately; watching those their specs name", "err", err)
		}
	}
	// Every deployment's refs, resolved all at once: one query per
	// deployment would be thousands every sync.
	refs := make([][]registry.Ref, len(deps))
	var all []registry.Ref
	for i, d := range deps {
		add := func(ref string) {
			if r, ok := serving.ParseModelRef(ref); ok {
				refs[i] = append(refs[i], r)
			}
		}
		add(d.Spec.Model)
		for _, t := range d.Spec.Traffic {
			add(t.Model)
		}
		for _, r := range served[d.Name] {
			refs[i] = append(refs[i], registry.Ref{Model: r.Model, Version: r.Version})
		}
		all = append(all, refs[i]...)
	}
	versions, err := s.Registry.ResolveAll(ctx, all)
	if err != nil {
		return nil, err
	}
	used := map[string]*monitor.Profile{}
	var out []Entry
	for i, d := range deps {
		seen := map[string]bool{}
		for _, r := range refs[i] {
			v, ok := versions[r]
			if !ok || seen[v.Ref().String()] {
				continue
			}
			seen[v.Ref().String()] = true
			p, id, err := s.profile(ctx, v)
			if err != nil {
				continue
			}
			used[id] = p
			out = append(out, Entry{Deployment: d.Name, Version: v.Ref().String(), ProfileID: id, Profile: p})
		}
	}
	s.cache = used // profiles no longer used are forgotten
	sortEntries(out)
	return out, nil
}

// profile reads v's profile, from the cache when its ID was read before.
func (s *Syncer) profile(ctx context.Context, v registry.Version) (*monitor.Profile, string, error) {
	if id := v.Tags[registry.TagProfileSHA256]; id != "" {
		if p := s.cache[id]; p != nil {
			return p, id, nil
		}
	}
	p, id, err := s.Registry.VersionProfile(ctx, v)
	if err != nil && !errors.Is(err, registry.ErrNoProfile) && s.Log != nil {
		s.Log.Warn("drift: cannot read a version's profile; it is not watched", "version", v.Ref().String(), "err", err)
	}
	return p, id, err
}
