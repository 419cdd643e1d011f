package predlog

import (
	"errors"
	"time"
)

// Tee returns a Sink that hands every batch to each of sinks in turn: the
// file log and, beside it, consumers of the same records (the drift
// monitor), all fed by one Logger and bounded by its queue. Each sink gets
// the same records, so none may change them. Write, Tick and Close call
// every sink even when one fails, and return the sinks' errors joined; a
// failed Write counts its batch as dropped (reason sink_error) although
// the other sinks have it.
func Tee(sinks ...Sink) Sink {
	if len(sinks) == 1 {
		return sinks[0]
	}
	return tee(sinks)
}

type tee []Sink

func (t tee) Write(recs []Record) error {
	var errs []error
	for _, s := range t {
		if err := s.Write(recs); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (t tee) Tick(now time.Time) error {
	var errs []error
	for _, s := range t {
		if err := s.Tick(now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (t tee) Close() error {
	var errs []error
	for _, s := range t {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
