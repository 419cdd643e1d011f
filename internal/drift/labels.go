package drift

import (
	"strconv"
	"sync"

	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/predlog"
)

// The validation job: labels that arrive later (ebb monitor labels) are
// joined with the predictions the prediction log sampled, kept by request
// id in a bounded Index, and scored per version (monitor.JoinLabels). In
// ebb up the Sink fills the Index; in a cluster each gateway's Sink fills
// an Outbox that its Remote ships with its windows, and the operator's Hub
// keeps the Index. Only the latest predictions are kept: a label for an
// older one counts as unmatched.

// DefaultIndexSize is how many predictions an Index keeps.
const DefaultIndexSize = 200_000

// maxShippedPredictions bounds the predictions one WindowsReport carries.
const maxShippedPredictions = 50_000

// Predictions takes the predictions a Sink extracts from the records.
type Predictions interface {
	Add(ps []monitor.Prediction)
}

// predictionsOf extracts the predictions of a record: one per row of its
// answer's first output tensor, the row's value (or, for a row of
// several values such as class scores, the index of the largest), keyed
// by the request id ("id:i" for row i of a batch of several). None for a
// record without a request id or a JSON answer.
func predictionsOf(rec *predlog.Record, version string) []monitor.Prediction {
	if rec.RequestID == "" || len(rec.Outputs) == 0 {
		return nil
	}
	resp, err := oip.ParseResponse(rec.Outputs, len(rec.Outputs))
	if err != nil || len(resp.Outputs) == 0 {
		return nil
	}
	if version == "" {
		version = resp.ModelVersion
	}
	t := resp.Outputs[0]
	n, w := batch(t), width(t)
	col := values(t)
	if n <= 0 || w <= 0 || (col.nums == nil && col.strs == nil) {
		return nil
	}
	out := make([]monitor.Prediction, 0, n)
	for r := range n {
		p := monitor.Prediction{Key: rec.RequestID, Deployment: rec.Deployment, Version: version}
		if n > 1 {
			p.Key += ":" + strconv.Itoa(r)
		}
		switch {
		case col.strs != nil:
			p.Str, p.IsStr = col.strs[r*w], true
		case w == 1:
			p.Num = col.nums[r]
		default:
			best := 0
			for j := 1; j < w; j++ {
				if col.nums[r*w+j] > col.nums[r*w+best] {
					best = j
				}
			}
			p.Num = float64(best)
		}
		out = append(out, p)
	}
	return out
}

// Index keeps the latest predictions by deployment and key, at most its
// size: the oldest are forgotten first. It is safe for concurrent use.
type Index struct {
	// mu guards the fields below.
	mu sync.Mutex
	// ring grows as predictions come, up to size: allocated whole up
	// front, it would be megabytes of pointers for the garbage collector
	// to scan in every ebb up, labelled or not.
	ring  []monitor.Prediction
	size  int
	next  int
	byKey map[indexKey]int // slot in ring
}

type indexKey struct{ deployment, key string }

// NewIndex returns an Index of size predictions (DefaultIndexSize when 0).
func NewIndex(size int) *Index {
	if size <= 0 {
		size = DefaultIndexSize
	}
	return &Index{size: size, byKey: map[indexKey]int{}}
}

// Add keeps ps, in place of the oldest predictions when full; a key seen
// again takes the newer prediction.
func (x *Index) Add(ps []monitor.Prediction) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, p := range ps {
		k := indexKey{p.Deployment, p.Key}
		if len(x.ring) < x.size {
			x.ring = append(x.ring, p)
			x.byKey[k] = len(x.ring) - 1
			continue
		}
		old := x.ring[x.next]
		if slot, ok := x.byKey[indexKey{old.Deployment, old.Key}]; ok && slot == x.next {
			delete(x.byKey, indexKey{old.Deployment, old.Key})
		}
		x.ring[x.next] = p
		x.byKey[k] = x.next
		x.next = (x.next + 1) % x.size
	}
}

// Lookup returns deployment's prediction of key.
func (x *Index) Lookup(deployment, key string) (monitor.Prediction, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	i, ok := x.byKey[indexKey{deployment, key}]
	if !ok {
		return monitor.Prediction{}, false
	}
	return x.ring[i], true
}

// JoinLabels scores deployment's kept predictions against labels.
func (x *Index) JoinLabels(deployment string, labels []monitor.Label, task monitor.Task) (monitor.QualityReport, error) {
	return monitor.JoinLabels(deployment, labels, func(key string) (monitor.Prediction, bool) { return x.Lookup(deployment, key) }, task)
}

// Outbox queues a gateway's predictions until its Remote ships them, at
// most its size: beyond, the oldest are dropped. It is safe for
// concurrent use.
type Outbox struct {
	max int

	// mu guards the fields below.
	mu    sync.Mutex
	items []monitor.Prediction
	first uint64 // sequence number of items[0]
}

// NewOutbox returns an Outbox of size predictions (DefaultIndexSize when
// 0).
func NewOutbox(size int) *Outbox {
	if size <= 0 {
		size = DefaultIndexSize
	}
	return &Outbox{max: size}
}

// Add queues ps.
func (o *Outbox) Add(ps []monitor.Prediction) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.items = append(o.items, ps...)
	if over := len(o.items) - o.max; over > 0 {
		o.items = append(o.items[:0:0], o.items[over:]...)
		o.first += uint64(over)
	}
}

// peek returns up to n of the oldest queued predictions and the sequence
// number after them, for ack.
func (o *Outbox) peek(n int) ([]monitor.Prediction, uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n = min(n, len(o.items))
	return append([]monitor.Prediction(nil), o.items[:n]...), o.first + uint64(n)
}

// ack drops the predictions before sequence number end: they were
// shipped.
func (o *Outbox) ack(end uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if end <= o.first {
		return
	}
	n := min(int(end-o.first), len(o.items))
	o.items = append(o.items[:0:0], o.items[n:]...)
	o.first += uint64(n)
}
