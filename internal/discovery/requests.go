package discovery

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/reqstats"
)

// requestsSent is what the operator holds of the gateway's cumulative
// request counters (Reporter.Requests), so that a report carries only the
// deployments whose counters moved since the last report the operator
// answered; or all those with any request (a Full report) in the first
// report, and when the operator asks for it (a new leader, which knows
// none of them).
type requestsSent struct {
	// mu guards everything below.
	mu sync.Mutex
	// epoch identifies this process's counters: the time of its first
	// report, in unix nanoseconds.
	epoch int64
	// acked holds the counters of the reports the operator answered; nil
	// before the first.
	acked map[string]reqstats.Totals
	// wantFull: the operator asked for a Full report.
	wantFull bool
	// pending is what acked becomes once the latest report is answered;
	// nil when that report carried no counters.
	pending map[string]reqstats.Totals
}

// report reads src and returns the counters a report carries as of now;
// nil when src fails (the next report carries what moved).
func (s *requestsSent) report(src reqstats.Source, now time.Time) *operator.RequestReport {
	tot, err := src.Totals()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = nil
	if err != nil {
		return nil
	}
	if s.epoch == 0 {
		s.epoch = now.UnixNano()
	}
	full := s.acked == nil || s.wantFull
	var names []string
	for name, t := range tot {
		if name == "" || t.Requests == 0 && t.Observed == 0 {
			continue
		}
		if a, ok := s.acked[name]; !full && ok && a.Requests == t.Requests && a.Errors == t.Errors && a.Observed == t.Observed {
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	if len(names) > operator.MaxRequestDeployments {
		// The rest go with the next reports; the operator asks for a
		// Full report again.
		names, full = names[:operator.MaxRequestDeployments], false
	}
	rep := &operator.RequestReport{Epoch: s.epoch, Full: full, Deployments: make(map[string]reqstats.Totals, len(names))}
	s.pending = maps.Clone(s.acked)
	if s.pending == nil {
		s.pending = map[string]reqstats.Totals{}
	}
	for _, name := range names {
		rep.Deployments[name] = tot[name]
		s.pending[name] = tot[name]
	}
	return rep
}

// acknowledge records that the operator received the latest report.
func (s *requestsSent) acknowledge() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending != nil {
		s.acked, s.pending = s.pending, nil
	}
}

// answered records whether the operator asked for a Full report
// (operator.DemandAnswer.WantRequests).
func (s *requestsSent) answered(wantFull bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wantFull = wantFull
}
