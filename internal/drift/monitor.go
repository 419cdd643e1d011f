package drift

import (
	"slices"
	"strings"
	"sync"

	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Entry is one version a deployment serves that has a reference profile:
// what the monitor watches.
type Entry struct {
	Deployment string `json:"deployment"`
	// Version is the registry version, "diabetes:3".
	Version string `json:"version"`
	// ProfileID identifies the profile: its SHA-256 in the registry.
	ProfileID string           `json:"profileID"`
	Profile   *monitor.Profile `json:"profile"`
}

// Monitor keeps a sliding window per deployment × version of the entries
// it is given, and counts predictions into them (Observe). It is safe for
// concurrent use.
type Monitor struct {
	opts monitor.WindowOptions

	// mu guards deps.
	mu   sync.RWMutex
	deps map[string]*deployment
}

// deployment is what a Monitor watches of one deployment.
type deployment struct {
	versions map[string]*tracked // by registry version, "diabetes:3"
	// byOIP maps a version's OIP v2 form ("3") to its registry version,
	// "" when two served versions share it (two models' version 3).
	byOIP map[string]string
}

type tracked struct {
	entry  Entry
	window *monitor.Window
	dec    *decoder
}

// NewMonitor returns a Monitor whose windows take opts.
func NewMonitor(opts monitor.WindowOptions) *Monitor {
	return &Monitor{opts: opts, deps: map[string]*deployment{}}
}

// Set makes entries what the monitor watches: a deployment × version it
// watched with the same profile keeps its window; a new one, or one whose
// profile changed, starts empty; the rest are dropped.
func (m *Monitor) Set(entries []Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[string]*deployment, len(m.deps))
	for _, e := range entries {
		if e.Profile == nil {
			continue
		}
		d := next[e.Deployment]
		if d == nil {
			d = &deployment{versions: map[string]*tracked{}, byOIP: map[string]string{}}
			next[e.Deployment] = d
		}
		var t *tracked
		if old := m.deps[e.Deployment]; old != nil {
			if o := old.versions[e.Version]; o != nil && o.entry.ProfileID == e.ProfileID {
				t = o
			}
		}
		if t == nil {
			t = &tracked{entry: e, window: monitor.NewWindow(e.Profile, m.opts), dec: newDecoder(e.Profile)}
		}
		d.versions[e.Version] = t
		oip := serving.OIPVersion(e.Version)
		if prev, dup := d.byOIP[oip]; dup && prev != e.Version {
			d.byOIP[oip] = ""
		} else {
			d.byOIP[oip] = e.Version
		}
	}
	m.deps = next
}

// Entries returns what the monitor watches, by deployment and version.
func (m *Monitor) Entries() []Entry {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Entry
	for _, d := range m.deps {
		for _, t := range d.versions {
			out = append(out, t.entry)
		}
	}
	sortEntries(out)
	return out
}

func sortEntries(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int {
		if c := strings.Compare(a.Deployment, b.Deployment); c != 0 {
			return c
		}
		return strings.Compare(a.Version, b.Version)
	})
}

// Watches reports whether the monitor watches any version of deployment.
func (m *Monitor) Watches(deployment string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.deps[deployment] != nil
}

// lookup finds the tracked version of deployment that version names: a
// registry version ("diabetes:3"), its OIP v2 form ("3"), or "" when the
// deployment has only one watched version. nil when none matches.
func (m *Monitor) lookup(deployment, version string) *tracked {
	m.mu.RLock()
	defer m.mu.RUnlock()
	d := m.deps[deployment]
	if d == nil {
		return nil
	}
	if t := d.versions[version]; t != nil {
		return t
	}
	if v := d.byOIP[version]; v != "" {
		return d.versions[v]
	}
	if version == "" && len(d.versions) == 1 {
		for _, t := range d.versions {
			return t
		}
	}
	return nil
}

// Reports returns the drift report of each watched version of deployment,
// sorted by version; nil when none is watched.
func (m *Monitor) Reports(deployment string) []monitor.VersionReport {
	m.mu.RLock()
	d := m.deps[deployment]
	var ts []*tracked
	if d != nil {
		for _, t := range d.versions {
			ts = append(ts, t)
		}
	}
	m.mu.RUnlock()
	return reportsOf(ts)
}

// AllReports returns the reports of every watched deployment × version.
func (m *Monitor) AllReports() map[string][]monitor.VersionReport {
	m.mu.RLock()
	deps := make(map[string][]*tracked, len(m.deps))
	for name, d := range m.deps {
		for _, t := range d.versions {
			deps[name] = append(deps[name], t)
		}
	}
	m.mu.RUnlock()
	out := make(map[string][]monitor.VersionReport, len(deps))
	for name, ts := range deps {
		out[name] = reportsOf(ts)
	}
	return out
}

func reportsOf(ts []*tracked) []monitor.VersionReport {
	if len(ts) == 0 {
		return nil
	}
	out := make([]monitor.VersionReport, 0, len(ts))
	for _, t := range ts {
		out = append(out, versionReport(t.entry, t.window.Report()))
	}
	slices.SortFunc(out, func(a, b monitor.VersionReport) int { return strings.Compare(a.Version, b.Version) })
	return out
}

func versionReport(e Entry, r monitor.Report) monitor.VersionReport {
	return monitor.VersionReport{Version: e.Version, ProfileID: e.ProfileID, ProfileRows: e.Profile.Rows, Report: r}
}

// WindowReport is one gateway's window of one deployment × version, as it
// ships them to the operator (see Hub).
type WindowReport struct {
	Deployment string           `json:"deployment"`
	Version    string           `json:"version"`
	ProfileID  string           `json:"profileID"`
	Snapshot   monitor.Snapshot `json:"snapshot"`
}

// Snapshots returns the window of every watched version that counted a
// row in its span.
func (m *Monitor) Snapshots() []WindowReport {
	m.mu.RLock()
	var ts []*tracked
	for _, d := range m.deps {
		for _, t := range d.versions {
			ts = append(ts, t)
		}
	}
	m.mu.RUnlock()
	var out []WindowReport
	for _, t := range ts {
		s := t.window.Snapshot()
		if len(s.Blocks) == 0 {
			continue
		}
		out = append(out, WindowReport{Deployment: t.entry.Deployment, Version: t.entry.Version, ProfileID: t.entry.ProfileID, Snapshot: s})
	}
	return out
}
