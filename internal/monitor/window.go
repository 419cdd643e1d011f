package monitor

import (
	"errors"
	"math"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// ErrRowShape means a row's Num or Cat has a different length from the
// profile's numeric or categorical features.
var ErrRowShape = errors.New("monitor: row does not match the profile's features")

// WindowOptions size a Window; zero values take the defaults.
type WindowOptions struct {
	// SubWindow is the length of one sub-window; default 10 minutes.
	SubWindow time.Duration
	// SubWindows is the number of sub-windows the window spans; default 6
	// (an hour at the default SubWindow), at most 1440.
	SubWindows int
	// Clock tells Observe and Report the time; default the real clock.
	Clock clock.PassiveClock
	// Thresholds turn scores into a Status; the zero value takes
	// DefaultThresholds.
	Thresholds Thresholds
}

func (o WindowOptions) withDefaults() WindowOptions {
	if o.SubWindow <= 0 {
		o.SubWindow = 10 * time.Minute
	}
	if o.SubWindows <= 0 {
		o.SubWindows = 6
	}
	o.SubWindows = min(o.SubWindows, 1440)
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Thresholds == (Thresholds{}) {
		o.Thresholds = DefaultThresholds
	}
	return o
}

// Window counts the rows one deployment × version sees, in its profile's
// bins, over the last SubWindows sub-windows. It is safe for concurrent
// use. Its memory is fixed when it is made.
type Window struct {
	profile *Profile
	opts    WindowOptions
	sub     int64 // opts.SubWindow in nanoseconds

	// Column layout, fixed at construction.
	numFeat  []int            // feature index of each numeric column
	catFeat  []int            // feature index of each categorical column
	numEdges [][]float64      // edges of each numeric column
	catBins  []map[string]int // value → bin of each categorical column
	offset   []int            // first counter of each feature within a sub-window
	stride   int              // counters per sub-window: the sum of all bins
	nFeat    int              // len(profile.Features)

	// mu guards the counters below. Each has SubWindows blocks, one per
	// sub-window; slot s holds sub-window epoch[s] (time / SubWindow).
	mu      sync.Mutex
	epoch   []int64
	rows    []uint64
	counts  []uint32  // stride per sub-window
	missing []uint32  // nFeat per sub-window
	sums    []float64 // 2 per numeric column per sub-window: sum, sum of squares
}

// NewWindow returns an empty window over p's features. p must be valid
// (see Profile.Validate) and is not copied: do not change it afterwards.
func NewWindow(p *Profile, opts WindowOptions) *Window {
	opts = opts.withDefaults()
	w := &Window{profile: p, opts: opts, sub: int64(opts.SubWindow), nFeat: len(p.Features)}
	w.offset = make([]int, len(p.Features))
	for i := range p.Features {
		f := &p.Features[i]
		w.offset[i] = w.stride
		w.stride += f.Bins()
		if f.Kind == Numeric {
			w.numFeat = append(w.numFeat, i)
			w.numEdges = append(w.numEdges, f.Edges)
			continue
		}
		w.catFeat = append(w.catFeat, i)
		bins := make(map[string]int, len(f.Values))
		for b, v := range f.Values {
			bins[v] = b
		}
		w.catBins = append(w.catBins, bins)
	}
	n := opts.SubWindows
	w.epoch = make([]int64, n)
	for s := range w.epoch {
		w.epoch[s] = math.MinInt64
	}
	w.rows = make([]uint64, n)
	w.counts = make([]uint32, n*w.stride)
	w.missing = make([]uint32, n*w.nFeat)
	w.sums = make([]float64, n*2*len(w.numFeat))
	return w
}

// Profile returns the window's reference.
func (w *Window) Profile() *Profile { return w.profile }

// Observe counts one row at the clock's now. It does not allocate.
func (w *Window) Observe(r Row) error {
	if len(r.Num) != len(w.numFeat) || len(r.Cat) != len(w.catFeat) {
		return ErrRowShape
	}
	e := floorDiv(w.opts.Clock.Now().UnixNano(), w.sub)
	w.mu.Lock()
	s := w.slotLocked(e)
	counts := w.counts[s*w.stride : (s+1)*w.stride]
	missing := w.missing[s*w.nFeat : (s+1)*w.nFeat]
	sums := w.sums[s*2*len(w.numFeat) : (s+1)*2*len(w.numFeat)]
	for j, v := range r.Num {
		fi := w.numFeat[j]
		if v != v { // NaN
			missing[fi]++
			continue
		}
		counts[w.offset[fi]+numBin(w.numEdges[j], v)]++
		sums[2*j] += v
		sums[2*j+1] += v * v
	}
	for j, v := range r.Cat {
		fi := w.catFeat[j]
		b, ok := w.catBins[j][v]
		if !ok {
			b = len(w.catBins[j]) // the "other" bucket
		}
		counts[w.offset[fi]+b]++
	}
	w.rows[s]++
	w.mu.Unlock()
	return nil
}

// slotLocked returns the slot of sub-window e, clearing it when it held an
// older one.
func (w *Window) slotLocked(e int64) int {
	n := int64(len(w.epoch))
	s := int(((e % n) + n) % n)
	if w.epoch[s] == e {
		return s
	}
	w.epoch[s] = e
	w.rows[s] = 0
	clear(w.counts[s*w.stride : (s+1)*w.stride])
	clear(w.missing[s*w.nFeat : (s+1)*w.nFeat])
	clear(w.sums[s*2*len(w.numFeat) : (s+1)*2*len(w.numFeat)])
	return s
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Counts is what a window saw of one feature, summed over its live
// sub-windows.
type Counts struct {
	// Bins are the counts per bin, in the feature's bin order.
	Bins []uint64
	// Missing counts NaN values of a numeric feature.
	Missing uint64
	// Sum and SumSq are a numeric feature's sum and sum of squares.
	Sum, SumSq float64
}

// snapshot sums the live sub-windows (those within SubWindows of now's).
func (w *Window) snapshot(now time.Time) (rows uint64, per []Counts, from time.Time) {
	e := floorDiv(now.UnixNano(), w.sub)
	per = make([]Counts, w.nFeat)
	for i := range per {
		per[i].Bins = make([]uint64, w.profile.Features[i].Bins())
	}
	numCol := make([]int, w.nFeat) // numeric column of each feature, or -1
	for i := range numCol {
		numCol[i] = -1
	}
	for j, fi := range w.numFeat {
		numCol[fi] = j
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for s, se := range w.epoch {
		if se > e || se <= e-int64(len(w.epoch)) {
			continue
		}
		rows += w.rows[s]
		for i := range per {
			c := &per[i]
			base := s*w.stride + w.offset[i]
			for b := range c.Bins {
				c.Bins[b] += uint64(w.counts[base+b])
			}
			c.Missing += uint64(w.missing[s*w.nFeat+i])
			if j := numCol[i]; j >= 0 {
				c.Sum += w.sums[s*2*len(w.numFeat)+2*j]
				c.SumSq += w.sums[s*2*len(w.numFeat)+2*j+1]
			}
		}
	}
	from = time.Unix(0, (e-int64(len(w.epoch))+1)*w.sub)
	return rows, per, from
}

// Report scores the window at the clock's now against its profile.
func (w *Window) Report() Report {
	now := w.opts.Clock.Now()
	rows, per, from := w.snapshot(now)
	r := Report{From: from, To: now, Rows: rows, Features: make([]FeatureScore, len(per))}
	for i := range per {
		r.Features[i] = score(&w.profile.Features[i], &per[i], w.opts.Thresholds)
		r.Status = max(r.Status, r.Features[i].Status)
	}
	return r
}

// Monitor keeps one Window per deployment × version. It is safe for
// concurrent use; Observe takes a read lock and does not allocate.
type Monitor struct {
	opts WindowOptions

	// mu guards windows.
	mu      sync.RWMutex
	windows map[key]*Window
}

type key struct{ deployment, version string }

// NewMonitor returns a monitor whose windows take opts.
func NewMonitor(opts WindowOptions) *Monitor {
	return &Monitor{opts: opts.withDefaults(), windows: make(map[key]*Window)}
}

// Set starts monitoring deployment's version against p, replacing (and
// emptying) any window it had.
func (m *Monitor) Set(deployment, version string, p *Profile) {
	w := NewWindow(p, m.opts)
	m.mu.Lock()
	m.windows[key{deployment, version}] = w
	m.mu.Unlock()
}

// Remove stops monitoring deployment's version.
func (m *Monitor) Remove(deployment, version string) {
	m.mu.Lock()
	delete(m.windows, key{deployment, version})
	m.mu.Unlock()
}

// Window returns deployment's version's window, or nil.
func (m *Monitor) Window(deployment, version string) *Window {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.windows[key{deployment, version}]
}

// Observe counts r for deployment's version; it reports false when that
// version has no window (no profile) and ErrRowShape when r does not fit.
func (m *Monitor) Observe(deployment, version string, r Row) (bool, error) {
	w := m.Window(deployment, version)
	if w == nil {
		return false, nil
	}
	return true, w.Observe(r)
}
