package drift

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/ebb-ml/ebb/internal/monitor"
)

// Paths of the operator's drift API for gateways (scope gateway).
const (
	// ProfilesPath serves what to watch (GET, ProfileList, with an ETag);
	// ?sync=1 asks the operator to look again soon, for a gateway that
	// saw predictions of a deployment × version it does not watch.
	ProfilesPath = "/ebb/v1/drift/profiles"
	// WindowsPath receives a gateway's windows (POST, WindowsReport).
	WindowsPath = "/ebb/v1/drift/windows"
)

// maxWindowsBytes bounds a WindowsReport: about 250 versions of 100
// features at the default window.
const maxWindowsBytes = 32 << 20

// ProfileList is the body of GET ProfilesPath.
type ProfileList struct {
	Items []Entry `json:"items"`
}

// WindowsReport is the body of POST WindowsPath: every window of the
// gateway that counted a row, whole (see monitor.Snapshot).
type WindowsReport struct {
	Gateway string         `json:"gateway"`
	Windows []WindowReport `json:"windows"`
	// Predictions are those the gateway logged since its last report
	// that the hub answered, for label joins (labels.go).
	Predictions []monitor.Prediction `json:"predictions,omitempty"`
}

// Hub is the cluster's drift monitor, on the operator. Gateways see the
// traffic and count it in windows of their own (a Monitor each, fed by
// their prediction log); the Hub tells them what to watch (ProfilesPath)
// and keeps the latest windows each ships (WindowsPath). Window counts
// are additive, so a version's report is that of the sum of its
// gateways' windows, merged when asked (Reports, the metrics). Each
// report replaces the gateway's previous one whole, so a lost or repeated
// report costs nothing; a gateway silent for a window's span is
// forgotten. It is safe for concurrent use.
type Hub struct {
	opts monitor.WindowOptions
	clk  clock.PassiveClock
	span time.Duration
	// Missed, when set, is called for GET ProfilesPath?sync=1 (a
	// Syncer's Wake).
	Missed func()

	index *Index // the gateways' predictions, for label joins

	// mu guards the fields below.
	mu      sync.Mutex
	entries map[key]*hubEntry
	list    []byte // ProfileList of entries, JSON
	etag    string
	gws     map[string]*gatewayWindows
}

type key struct{ deployment, version string }

type hubEntry struct {
	Entry
	shape *monitor.Window // an empty window, to check snapshots against
}

type gatewayWindows struct {
	seen    time.Time
	windows map[key]WindowReport
}

// NewHub returns an empty Hub whose windows take opts (the gateways'
// must have the same SubWindow).
func NewHub(opts monitor.WindowOptions) *Hub {
	h := &Hub{opts: opts, index: NewIndex(0), entries: map[key]*hubEntry{}, gws: map[string]*gatewayWindows{}}
	h.clk = opts.Clock
	if h.clk == nil {
		h.clk = clock.RealClock{}
	}
	sub, n := opts.SubWindow, opts.SubWindows
	if sub <= 0 {
		sub = 10 * time.Minute
	}
	if n <= 0 {
		n = 6
	}
	h.span = sub * time.Duration(n)
	h.Set(nil)
	return h
}

// Set makes entries what the gateways watch.
func (h *Hub) Set(entries []Entry) {
	entries = slices.Clone(entries)
	sortEntries(entries)
	list, _ := json.Marshal(ProfileList{Items: nonNil(entries)})
	sum := sha256.Sum256(list)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	h.mu.Lock()
	defer h.mu.Unlock()
	next := make(map[key]*hubEntry, len(entries))
	for _, e := range entries {
		k := key{e.Deployment, e.Version}
		if old := h.entries[k]; old != nil && old.ProfileID == e.ProfileID {
			next[k] = old
			continue
		}
		next[k] = &hubEntry{Entry: e, shape: monitor.NewWindow(e.Profile, h.opts)}
	}
	h.entries, h.list, h.etag = next, list, etag
}

func nonNil(es []Entry) []Entry {
	if es == nil {
		return []Entry{}
	}
	return es
}

// Receive keeps r's windows as its gateway's latest, in place of those it
// sent before. A window of a deployment × version the hub does not watch,
// or of another profile, is left out (the gateway has not polled the
// latest profiles yet); one shaped unlike its profile is an error, and
// nothing of r is kept.
func (h *Hub) Receive(r WindowsReport) error {
	if r.Gateway == "" {
		return fmt.Errorf("drift windows have no gateway: set \"gateway\" to the gateway's pod name")
	}
	if len(r.Predictions) > maxShippedPredictions {
		return fmt.Errorf("drift windows from gateway %q carry %d predictions; at most %d", r.Gateway, len(r.Predictions), maxShippedPredictions)
	}
	for _, p := range r.Predictions {
		if p.Deployment == "" || p.Key == "" {
			return fmt.Errorf("drift windows from gateway %q: a prediction has no deployment or key", r.Gateway)
		}
	}
	now := h.clk.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	keep := make(map[key]WindowReport, len(r.Windows))
	for _, w := range r.Windows {
		e := h.entries[key{w.Deployment, w.Version}]
		if e == nil || e.ProfileID != w.ProfileID {
			continue
		}
		if err := e.shape.Check(w.Snapshot); err != nil {
			return fmt.Errorf("window of %s %s from gateway %q: %w: the gateway and the operator must run the same ebb version and window", w.Deployment, w.Version, r.Gateway, err)
		}
		keep[key{w.Deployment, w.Version}] = w
	}
	h.gws[r.Gateway] = &gatewayWindows{seen: now, windows: keep}
	h.index.Add(r.Predictions)
	for gw, g := range h.gws {
		if now.Sub(g.seen) > h.span {
			delete(h.gws, gw)
		}
	}
	return nil
}

// JoinLabels scores deployment's predictions that the gateways shipped
// against labels.
func (h *Hub) JoinLabels(deployment string, labels []monitor.Label, task monitor.Task) (monitor.QualityReport, error) {
	return h.index.JoinLabels(deployment, labels, task)
}

// Reports returns the merged report of each watched version of
// deployment, sorted by version; nil when none is watched.
func (h *Hub) Reports(deployment string) []monitor.VersionReport {
	return h.reports(func(k key) bool { return k.deployment == deployment })[deployment]
}

// AllReports returns the merged reports of every watched deployment.
func (h *Hub) AllReports() map[string][]monitor.VersionReport {
	return h.reports(func(key) bool { return true })
}

func (h *Hub) reports(want func(key) bool) map[string][]monitor.VersionReport {
	type job struct {
		e     Entry
		snaps []monitor.Snapshot
	}
	h.mu.Lock()
	var jobs []job
	for k, e := range h.entries {
		if !want(k) {
			continue
		}
		j := job{e: e.Entry}
		for _, g := range h.gws {
			if w, ok := g.windows[k]; ok && w.ProfileID == e.ProfileID {
				j.snaps = append(j.snaps, w.Snapshot)
			}
		}
		jobs = append(jobs, j)
	}
	h.mu.Unlock()
	out := map[string][]monitor.VersionReport{}
	for _, j := range jobs {
		w := monitor.NewWindow(j.e.Profile, h.opts)
		for _, s := range j.snaps {
			_ = w.Merge(s) // checked on receipt
		}
		out[j.e.Deployment] = append(out[j.e.Deployment], versionReport(j.e, w.Report()))
	}
	for _, rs := range out {
		slices.SortFunc(rs, func(a, b monitor.VersionReport) int { return strings.Compare(a.Version, b.Version) })
	}
	return out
}

// Handler serves ProfilesPath and WindowsPath; put it behind the
// gateways' authentication (scope gateway).
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ProfilesPath, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("sync") != "" && h.Missed != nil {
			h.Missed()
		}
		h.mu.Lock()
		list, etag := h.list, h.etag
		h.mu.Unlock()
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(list)
	})
	mux.HandleFunc("POST "+WindowsPath, func(w http.ResponseWriter, r *http.Request) {
		var rep WindowsReport
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxWindowsBytes))
		err := dec.Decode(&rep)
		if err != nil {
			err = fmt.Errorf("invalid drift windows: %w", err)
		} else {
			err = h.Receive(rep)
		}
		if err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "drift/invalid", "message": err.Error()}})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
