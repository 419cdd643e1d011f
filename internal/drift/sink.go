package drift

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/ebb-ml/ebb/internal/predlog"
)

// Reasons a record is not counted, the reason label of
// ebb_drift_records_skipped_total.
const (
	ReasonNoProfile = "no_profile" // the deployment × version has no watched profile
	ReasonStatus    = "status"     // the prediction failed
	ReasonNotJSON   = "not_json"   // not an OIP v2 JSON body (binary tensors, another protocol)
	ReasonNoTensor  = "no_tensor"  // no tensor matches the profile's features
	ReasonShape     = "shape"      // a tensor's columns do not match the profile's features
)

// Sink counts the prediction log's records into a Monitor's windows. It is
// a predlog.Sink, to put beside the files in a predlog.Tee: the logger's
// own goroutine calls it, so decoding never runs on the request path, and
// it sees exactly the sampled share the log keeps. It never fails a
// write: a record it cannot read is skipped and counted.
type Sink struct {
	mon   *Monitor
	preds Predictions
	met   *Metrics
	// missed, when set, is told of a record whose deployment × version
	// the monitor does not watch (a Syncer's Wake).
	missed func()
}

var _ predlog.Sink = (*Sink)(nil)

// NewSink returns a Sink that counts into mon and, when preds is set,
// hands it the predictions of every record with a request id, for label
// joins (labels.go); met may be nil. missed, when set, is called (from the
// logger's goroutine) for each record of a deployment × version the
// monitor does not watch, so that its profiles can be looked up sooner
// than the next periodic sync.
func NewSink(mon *Monitor, preds Predictions, met *Metrics, missed func()) *Sink {
	return &Sink{mon: mon, preds: preds, met: met, missed: missed}
}

// Write counts recs.
func (s *Sink) Write(recs []predlog.Record) error {
	for i := range recs {
		s.observe(&recs[i])
	}
	return nil
}

// Tick does nothing: windows rotate by their clock.
func (s *Sink) Tick(time.Time) error { return nil }

// Close does nothing.
func (s *Sink) Close() error { return nil }

func (s *Sink) observe(rec *predlog.Record) {
	if rec.Status != 0 && rec.Status/100 != 2 {
		s.met.skipped(rec.Deployment, ReasonStatus)
		return
	}
	t := s.mon.lookup(rec.Deployment, rec.ModelVersion)
	if t == nil && s.mon.Watches(rec.Deployment) {
		// The gateway may not know the version; the replica's answer
		// says which one served.
		if v := answerVersion(rec.Outputs); v != "" && v != rec.ModelVersion {
			t = s.mon.lookup(rec.Deployment, v)
		}
	}
	if s.preds != nil {
		version := rec.ModelVersion
		if t != nil {
			version = t.entry.Version
		}
		if ps := predictionsOf(rec, version); len(ps) > 0 {
			s.preds.Add(ps)
		}
	}
	if t == nil {
		s.met.skipped(rec.Deployment, ReasonNoProfile)
		if s.missed != nil {
			s.missed()
		}
		return
	}
	rows, _, err := t.dec.decode(rec.Inputs, rec.Outputs)
	if err != nil {
		s.met.skipped(rec.Deployment, reasonOf(err))
		return
	}
	for _, r := range rows {
		_ = t.window.Observe(r) // rows are made to the profile's shape
	}
	s.met.observed(rec.Deployment, len(rows))
}

func reasonOf(err error) string {
	switch {
	case errors.Is(err, errNoTensor):
		return ReasonNoTensor
	case errors.Is(err, errShape):
		return ReasonShape
	}
	return ReasonNotJSON
}

// answerVersion is the model_version of an OIP v2 answer, or "".
func answerVersion(body []byte) string {
	var a struct {
		ModelVersion string `json:"model_version"`
	}
	if json.Unmarshal(body, &a) != nil {
		return ""
	}
	return a.ModelVersion
}
