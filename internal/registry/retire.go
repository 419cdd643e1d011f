package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebb-ml/ebb/internal/store"
)

// RetirePolicy says when unused versions are warned about, retired and
// garbage-collected. A zero duration turns its step (and the steps after
// it) off.
type RetirePolicy struct {
	// WarnAfter is how long a version may go unused before it is warned.
	WarnAfter time.Duration
	// RetireAfter is how long a version may go unused before it retires;
	// it is at least WarnAfter.
	RetireAfter time.Duration
	// GCGrace is how long a retired version keeps its artifact.
	GCGrace time.Duration
	// KeepVersions is how many of the versions each existing deployment
	// served last are kept: never warned or retired, so that `ebb rollout
	// undo` can go back to them. 0 keeps only the versions in use.
	KeepVersions int
}

// Validate reports a policy whose steps are out of order.
func (p RetirePolicy) Validate() error {
	if p.WarnAfter < 0 || p.RetireAfter < 0 || p.GCGrace < 0 {
		return fmt.Errorf("retirement durations must not be negative: %+v", p)
	}
	if p.KeepVersions < 0 {
		return fmt.Errorf("keep-versions (%d) must not be negative: give 0 to keep only the versions in use", p.KeepVersions)
	}
	if p.RetireAfter > 0 && p.RetireAfter < p.WarnAfter {
		return fmt.Errorf("retire-after (%s) must be at least warn-after (%s)", p.RetireAfter, p.WarnAfter)
	}
	return nil
}

// Usage is what retirement asks a home about its deployments; both fields
// may be nil.
type Usage struct {
	// InUse reports whether a deployment runs or names model's version
	// (the control loop's InUse).
	InUse func(model string, version int) bool
	// Deployments lists the names of the deployments that exist; the last
	// RetirePolicy.KeepVersions versions each of them served are kept.
	Deployments func(ctx context.Context) ([]string, error)
}

// kept returns the versions among the last n that each of use's
// deployments served: the history of every deployment in one store read,
// that of deployments that no longer exist left out.
func (s *Service) kept(ctx context.Context, use Usage, n int) (map[Ref]bool, error) {
	keep := map[Ref]bool{}
	if n <= 0 || use.Deployments == nil {
		return keep, nil
	}
	names, err := use.Deployments(ctx)
	if err != nil {
		return nil, fmt.Errorf("list deployments, whose last versions are kept: %w", err)
	}
	served, err := s.st.LastServedAll(ctx, n)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		for _, r := range served[name] {
			keep[Ref{Model: r.Model, Version: r.Version}] = true
		}
	}
	return keep, nil
}

// Event is one state change that a retirement step made.
type Event struct {
	Model   string    `json:"model"`
	Version int       `json:"version"`
	From    State     `json:"from"`
	To      State     `json:"to"`
	At      time.Time `json:"at"`
	Message string    `json:"message"`
}

// Metrics are the registry's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	versions    *prometheus.GaugeVec
	transitions *prometheus.CounterVec
}

// NewMetrics creates the registry's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		versions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ebb_registry_versions",
			Help: "Model versions by state (active, warned, retired, purged), as of the latest retirement step.",
		}, []string{"state"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_registry_version_transitions_total",
			Help: "Model version state changes, by the state entered.",
		}, []string{"to"}),
	}
	reg.MustRegister(m.versions, m.transitions)
	return m
}

func (m *Metrics) transition(to State) {
	if m != nil {
		m.transitions.WithLabelValues(string(to)).Inc()
	}
}

func (m *Metrics) setCounts(counts map[State]int) {
	if m == nil {
		return
	}
	for _, st := range []State{StateActive, StateWarned, StateRetired, StatePurged} {
		m.versions.WithLabelValues(string(st)).Set(float64(counts[st]))
	}
}

// pageSize is how many models or versions one store call of Retire reads.
const pageSize = 500

// Retire runs one retirement step at now over every version and returns
// the state changes it made. A version is referenced when an alias points
// at it, use.InUse(model, version) says a deployment names it, or it is
// among the last p.KeepVersions versions that one of use.Deployments
// served; referenced versions never leave or are put back to active. For an
// unreferenced version, idle is now minus LastUsedAt (CreatedAt if never
// used), and each step moves it at most one state on:
//
//   - active, idle ≥ WarnAfter: warned.
//   - warned, idle < WarnAfter (used again): active; idle ≥ RetireAfter:
//     retired.
//   - retired, used since it retired: active; retired for ≥ GCGrace:
//     purged, and its artifact deleted when the ArtifactStore is an
//     ArtifactDeleter and no other unpurged version has the same artifact.
//     Without an ArtifactDeleter retired versions stay retired.
//
// A state changed concurrently by someone else is left alone. Run it
// periodically (the control loop does); it sets ebb_registry_versions.
func (s *Service) Retire(ctx context.Context, now time.Time, use Usage, p RetirePolicy) ([]Event, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	deleter, canDelete := s.art.(ArtifactDeleter)
	var all []Version
	// Without knowing what deployments served last, nothing may retire.
	referenced, err := s.kept(ctx, use, p.KeepVersions)
	if err != nil {
		return nil, fmt.Errorf("retire: %w", err)
	}
	for after := ""; ; {
		models, err := s.st.ListModels(ctx, ListOptions{After: after, Limit: pageSize})
		if err != nil {
			return nil, fmt.Errorf("retire: %w", err)
		}
		for _, m := range models {
			aliases, err := s.st.ListAliases(ctx, m.Name)
			if err != nil {
				return nil, fmt.Errorf("retire: %w", err)
			}
			for _, a := range aliases {
				referenced[Ref{Model: m.Name, Version: a.Version}] = true
			}
			for vafter := 0; ; {
				vs, err := s.st.ListVersions(ctx, m.Name, VersionListOptions{After: vafter, Limit: pageSize})
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return nil, fmt.Errorf("retire: %w", err)
				}
				all = append(all, vs...)
				if len(vs) < pageSize {
					break
				}
				vafter = vs[len(vs)-1].Version
			}
		}
		if len(models) < pageSize {
			break
		}
		after = models[len(models)-1].Name
	}

	type change struct {
		v      Version
		to     State
		reason string
	}
	var changes []change
	final := make(map[Ref]State, len(all))
	for _, v := range all {
		ref := v.Ref()
		final[ref] = v.State
		inuse := referenced[ref] || (use.InUse != nil && use.InUse(v.Model, v.Version))
		last := v.LastUsedAt
		if last.Before(v.CreatedAt) {
			last = v.CreatedAt
		}
		idle := now.Sub(last)
		c := change{v: v}
		switch v.State {
		case StateActive:
			if !inuse && p.WarnAfter > 0 && idle >= p.WarnAfter {
				c.to, c.reason = StateWarned, fmt.Sprintf("unused for %s and not referenced by any alias or deployment, nor among the last versions one served", idle.Round(time.Second))
				if p.RetireAfter > 0 {
					c.reason += fmt.Sprintf("; it retires after %s unused", p.RetireAfter)
				}
			}
		case StateWarned:
			switch {
			case inuse:
				c.to, c.reason = StateActive, "referenced again"
			case p.WarnAfter == 0 || idle < p.WarnAfter:
				c.to, c.reason = StateActive, "used again"
			case p.RetireAfter > 0 && idle >= p.RetireAfter:
				c.to, c.reason = StateRetired, fmt.Sprintf("unused for %s: unloaded", idle.Round(time.Second))
				if canDelete && p.GCGrace > 0 {
					c.reason += fmt.Sprintf("; its artifact is deleted after %s", p.GCGrace)
				}
			}
		case StateRetired:
			switch {
			case inuse:
				c.to, c.reason = StateActive, "referenced again"
			case v.LastUsedAt.After(v.StateChangedAt):
				c.to, c.reason = StateActive, "used again"
			case canDelete && p.RetireAfter > 0 && p.GCGrace > 0 && now.Sub(v.StateChangedAt) >= p.GCGrace:
				c.to, c.reason = StatePurged, fmt.Sprintf("retired for %s: artifact deleted", now.Sub(v.StateChangedAt).Round(time.Second))
			}
		}
		if c.to != "" {
			final[ref] = c.to
			changes = append(changes, c)
		}
	}
	var events []Event
	var purged []Version
	for _, c := range changes {
		_, err := s.st.SetVersionState(ctx, c.v.Model, c.v.Version, c.v.State, c.to, now)
		if errors.Is(err, store.ErrConflict) {
			final[c.v.Ref()] = "" // changed by someone else: read again below
			continue
		}
		if err != nil {
			return events, fmt.Errorf("retire: %w", err)
		}
		if c.to == StatePurged {
			purged = append(purged, c.v)
		}
		ev := Event{Model: c.v.Model, Version: c.v.Version, From: c.v.State, To: c.to, At: now,
			Message: fmt.Sprintf("%s %s: %s", c.v.Ref(), c.to, c.reason)}
		events = append(events, ev)
		s.met.transition(c.to)
		s.log.Info("model version "+string(c.to), "model", ev.Model, "version", ev.Version, "from", ev.From, "reason", c.reason)
	}
	// An artifact is kept while any version that is not purged has it
	// (artifacts are stored by content, so versions can share one).
	kept := map[string]bool{}
	for _, v := range all {
		if final[v.Ref()] != StatePurged {
			kept[v.ArtifactURI] = true
		}
	}
	for _, v := range purged {
		if kept[v.ArtifactURI] {
			continue
		}
		kept[v.ArtifactURI] = true // delete once
		if err := deleter.Delete(ctx, v.ArtifactURI); err != nil {
			s.log.Error("cannot delete a purged version's artifact", "model", v.Model, "version", v.Version,
				"artifact", v.ArtifactURI, "err", err)
		}
	}
	counts := map[State]int{}
	for ref, st := range final {
		if st == "" {
			if v, err := s.st.GetVersion(ctx, ref.Model, ref.Version); err == nil {
				st = v.State
			}
		}
		counts[st]++
	}
	s.met.setCounts(counts)
	return events, nil
}

// RunRetirement runs Retire every period until ctx ends, logging any error
// (Retire logs its events); it blocks. use is as in Retire.
func (s *Service) RunRetirement(ctx context.Context, every time.Duration, use Usage, p RetirePolicy) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.Retire(ctx, s.now(), use, p); err != nil && ctx.Err() == nil {
			s.log.Warn("retirement step failed", "err", err)
		}
	}
}
