package limit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/ebb-ml/ebb/internal/serving"
)

// DefaultPollEvery is how often a Source asks for the limits when
// SourceOptions.Every is zero.
const DefaultPollEvery = 2 * time.Second

// Lister lists the limits that are set: the admin API's GET /v1/limits
// (apiclient.Client provides it).
type Lister interface {
	// ListLimitsIfChanged returns every limit and the ETag of the list,
	// or changed false, and nothing else, when etag ("" for none) still
	// names the list.
	ListLimitsIfChanged(ctx context.Context, etag string) (limits []serving.Limit, newETag string, changed bool, err error)
}

// SourceOptions configure a Source.
type SourceOptions struct {
	// Every is the time between polls; default DefaultPollEvery.
	Every time.Duration
	// Fraction returns the share of each limit this gateway enforces,
	// asked at every poll: 1/N for one of N ready gateways. Nil: 1.
	Fraction func() float64
	// Clock drives the polls and Sweep; default the real clock.
	Clock clock.WithTicker
	// Log receives a warning when polls start failing and a note when
	// the limits change; nil discards.
	Log *slog.Logger
}

// Source keeps a Limiter's table up to date: it polls a Lister and swaps
// in a new Table when the limits or the fraction changed. An unchanged
// list costs one request answered 304, with no body. While polls fail the
// Limiter keeps the limits it last had (none before the first success:
// a gateway that cannot read the limits admits every request rather than
// none).
type Source struct {
	lister Lister
	lim    *Limiter
	opts   SourceOptions

	// mu guards the fields below, what the last table was made of.
	mu       sync.Mutex
	etag     string
	limits   []serving.Limit
	fraction float64
	loaded   bool
	failing  bool
}

// NewSource returns a Source that feeds lim from lister; Run starts it.
func NewSource(lister Lister, lim *Limiter, opts SourceOptions) *Source {
	if opts.Every <= 0 {
		opts.Every = DefaultPollEvery
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Source{lister: lister, lim: lim, opts: opts}
}

// Run polls at once and then every opts.Every, sweeping the Limiter's
// idle states after each poll, until ctx is done. It returns nil then.
func (s *Source) Run(ctx context.Context) error {
	tick := s.opts.Clock.NewTicker(s.opts.Every)
	defer tick.Stop()
	for {
		err := s.Poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		s.noteFailure(err)
		s.lim.Sweep(s.opts.Clock.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C():
		}
	}
}

// Poll asks for the limits once and swaps the Limiter's table when they,
// or the fraction, changed. On error the Limiter keeps its table.
func (s *Source) Poll(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	limits, etag, changed, err := s.lister.ListLimitsIfChanged(ctx, s.etag)
	if err != nil {
		return fmt.Errorf("read tenant limits: %w", err)
	}
	fraction := 1.0
	if s.opts.Fraction != nil {
		fraction = clampFraction(s.opts.Fraction())
	}
	if !changed {
		if s.loaded && fraction == s.fraction {
			return nil
		}
		limits, etag = s.limits, s.etag
	}
	t, err := NewTable(limits, fraction)
	if err != nil {
		return fmt.Errorf("tenant limits: %w", err)
	}
	s.lim.Swap(t)
	if changed || !s.loaded {
		s.opts.Log.Info("tenant limits loaded", "limits", len(limits), "fraction", fraction)
	} else {
		s.opts.Log.Info("tenant limits rescaled: the number of gateways changed", "limits", len(limits), "fraction", fraction)
	}
	s.etag, s.limits, s.fraction, s.loaded = etag, limits, fraction, true
	return nil
}

// noteFailure logs the first failure of a streak, and its end.
func (s *Source) noteFailure(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil && !s.failing:
		s.failing = true
		s.opts.Log.Warn("cannot read tenant limits; the last ones read stay in force", "err", err, "loaded", s.loaded)
	case err == nil && s.failing:
		s.failing = false
		s.opts.Log.Info("tenant limits readable again")
	}
}
