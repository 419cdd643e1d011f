package operator

import (
	"fmt"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/traffic"
)

// Meters merges the request meters that gateways ship with their demand
// reports (DemandReport.Meters) into one traffic.Meter per route key — a
// split's primary (the deployment's name) or one of its tracks
// (name.tag) — which measures what every gateway saw: it is the cluster's
// measurer of rollouts. A gateway sends each completed bucket until a
// report that carried it is answered, so a bucket may come twice; Meters
// merges each gateway's buckets once, by their time. A key no report
// carried for traffic.DefaultSpan is forgotten. It is safe for concurrent
// use.
//
// What Measure sees of the last few seconds is partial: a gateway ships a
// bucket once it is complete, with its next report (every second).
type Meters struct {
	now func() time.Time

	// mu guards keys.
	mu   sync.Mutex
	keys map[string]*keyMeter
}

// keyMeter is the merged meter of one route key.
type keyMeter struct {
	meter *traffic.Meter
	seen  time.Time // when a report last carried the key
	// merged maps a gateway to the start (unix seconds) of the latest of
	// its buckets merged, and when it last sent one.
	merged map[string]gatewayMark
}

type gatewayMark struct {
	start int64
	seen  time.Time
}

// NewMeters returns empty Meters whose keys expire as measured by now
// (default time.Now).
func NewMeters(now func() time.Time) *Meters {
	if now == nil {
		now = time.Now
	}
	return &Meters{now: now, keys: map[string]*keyMeter{}}
}

// CheckMeters reports whether the meters of a demand report are what a
// gateway's Export gives: valid buckets (traffic.Bucket.Check), oldest
// first, each key's at most once.
func CheckMeters(meters map[string][]traffic.Bucket) error {
	for key, bs := range meters {
		for i := range bs {
			if err := bs[i].Check(); err != nil {
				return fmt.Errorf("meters of %q: %w", key, err)
			}
			if i > 0 && bs[i].Start <= bs[i-1].Start {
				return fmt.Errorf("meters of %q: bucket at unix second %d after %d: buckets must be sent oldest first, each once", key, bs[i].Start, bs[i-1].Start)
			}
		}
	}
	return nil
}

// Merge adds a gateway's buckets, per route key, into the merged meters,
// leaving out those it merged from that gateway before. It checks them
// all first (CheckMeters) and merges none if one is invalid.
func (m *Meters) Merge(gateway string, meters map[string][]traffic.Bucket) error {
	if err := CheckMeters(meters); err != nil {
		return err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, bs := range meters {
		km := m.keys[key]
		if km == nil {
			km = &keyMeter{meter: traffic.NewMeter(0, 0), merged: map[string]gatewayMark{}}
			m.keys[key] = km
		}
		km.seen = now
		mark, known := km.merged[gateway]
		i := 0
		for known && i < len(bs) && bs[i].Start <= mark.start {
			i++ // merged from this gateway already
		}
		if i == len(bs) {
			continue
		}
		_ = km.meter.Merge(bs[i:]) // checked above
		km.merged[gateway] = gatewayMark{start: bs[len(bs)-1].Start, seen: now}
	}
	m.expireLocked(now)
	return nil
}

// expireLocked forgets the keys, and each key's gateways, that sent no
// bucket for traffic.DefaultSpan: a split that ended, a gateway pod gone.
func (m *Meters) expireLocked(now time.Time) {
	for key, km := range m.keys {
		if now.Sub(km.seen) > traffic.DefaultSpan {
			delete(m.keys, key)
			continue
		}
		for gw, mark := range km.merged {
			if now.Sub(mark.seen) > traffic.DefaultSpan {
				delete(km.merged, gw)
			}
		}
	}
}

// Measure returns what the gateways measured of key (a deployment, or a
// track's name.tag) over [since, now], merged; a zero Measurement (no
// data) for a key no gateway reported.
func (m *Meters) Measure(key string, since, now time.Time) traffic.Measurement {
	m.mu.Lock()
	km := m.keys[key]
	m.mu.Unlock()
	if km == nil {
		return traffic.Measurement{}
	}
	return km.meter.Snapshot(since, now)
}
