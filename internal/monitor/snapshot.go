package monitor

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrSnapshotShape means a Snapshot was taken of a window over another
// profile, or with another sub-window length, than the window it is
// merged into.
var ErrSnapshotShape = errors.New("monitor: snapshot does not match the window")

// Snapshot is what a Window counted, one Block per live sub-window that
// saw a row. Window counts are additive: the windows of several processes
// that watch the same deployment × version (a cluster's gateways) merge
// into one window of the whole (Window.Merge). A snapshot is whole, not a
// delta since the previous one, so sending it again does no harm: the
// receiver keeps each sender's latest and merges those.
type Snapshot struct {
	// SubWindow is the window's sub-window length; only windows with the
	// same length merge.
	SubWindow time.Duration `json:"subWindow"`
	Blocks    []Block       `json:"blocks"`
}

// Block is one sub-window's counters, laid out as in the Window: Counts
// has one counter per bin of every feature, in the profile's feature and
// bin order; Missing one per feature; Sums the sum and the sum of squares
// of each numeric feature, in order.
type Block struct {
	// Epoch is the sub-window's start divided by SubWindow (Unix
	// nanoseconds).
	Epoch   int64     `json:"epoch"`
	Rows    uint64    `json:"rows"`
	Counts  []uint32  `json:"counts"`
	Missing []uint32  `json:"missing"`
	Sums    []float64 `json:"sums"`
}

// Rows returns the rows the snapshot's blocks counted.
func (s *Snapshot) Rows() uint64 {
	var n uint64
	for i := range s.Blocks {
		n += s.Blocks[i].Rows
	}
	return n
}

// Snapshot returns the window's live sub-windows that saw a row, at the
// clock's now. A sum that overflowed to an infinity is sent as 0 (JSON
// has no infinities), so the mean of such a feature is off; its bins are
// not.
func (w *Window) Snapshot() Snapshot {
	e := floorDiv(w.opts.Clock.Now().UnixNano(), w.sub)
	s := Snapshot{SubWindow: w.opts.SubWindow}
	nSums := 2 * len(w.numFeat)
	w.mu.Lock()
	defer w.mu.Unlock()
	for slot, se := range w.epoch {
		if !w.liveLocked(se, e) || w.rows[slot] == 0 {
			continue
		}
		b := Block{
			Epoch:   se,
			Rows:    w.rows[slot],
			Counts:  append([]uint32(nil), w.counts[slot*w.stride:(slot+1)*w.stride]...),
			Missing: append([]uint32(nil), w.missing[slot*w.nFeat:(slot+1)*w.nFeat]...),
			Sums:    append([]float64(nil), w.sums[slot*nSums:(slot+1)*nSums]...),
		}
		for i, v := range b.Sums {
			if math.IsInf(v, 0) || math.IsNaN(v) {
				b.Sums[i] = 0
			}
		}
		s.Blocks = append(s.Blocks, b)
	}
	return s
}

// liveLocked reports whether sub-window se is within the window at
// sub-window now.
func (w *Window) liveLocked(se, now int64) bool {
	return se <= now && se > now-int64(len(w.epoch))
}

// Check reports whether s could have been taken of a window shaped as w:
// the same sub-window length and, in every block, as many counters as w
// has bins, features and numeric features. It returns an error wrapping
// ErrSnapshotShape that says what differs.
func (w *Window) Check(s Snapshot) error {
	if s.SubWindow != w.opts.SubWindow {
		return fmt.Errorf("%w: sub-windows of %s, this window's are %s", ErrSnapshotShape, s.SubWindow, w.opts.SubWindow)
	}
	nSums := 2 * len(w.numFeat)
	for i := range s.Blocks {
		b := &s.Blocks[i]
		if len(b.Counts) != w.stride || len(b.Missing) != w.nFeat || len(b.Sums) != nSums {
			return fmt.Errorf("%w: block %d has %d counters, %d missing and %d sums; this window has %d, %d and %d",
				ErrSnapshotShape, i, len(b.Counts), len(b.Missing), len(b.Sums), w.stride, w.nFeat, nSums)
		}
	}
	return nil
}

// Merge adds what s counted to the window: each block that is live at the
// clock's now is added to the sub-window of its epoch; older blocks are
// left out. It checks s first (Check) and merges nothing when it does not
// fit.
func (w *Window) Merge(s Snapshot) error {
	if err := w.Check(s); err != nil {
		return err
	}
	e := floorDiv(w.opts.Clock.Now().UnixNano(), w.sub)
	nSums := 2 * len(w.numFeat)
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range s.Blocks {
		b := &s.Blocks[i]
		if !w.liveLocked(b.Epoch, e) {
			continue
		}
		slot := w.slotLocked(b.Epoch)
		w.rows[slot] += b.Rows
		counts := w.counts[slot*w.stride : (slot+1)*w.stride]
		for j, c := range b.Counts {
			counts[j] += c
		}
		missing := w.missing[slot*w.nFeat : (slot+1)*w.nFeat]
		for j, c := range b.Missing {
			missing[j] += c
		}
		sums := w.sums[slot*nSums : (slot+1)*nSums]
		for j, v := range b.Sums {
			sums[j] += v
		}
	}
	return nil
}
