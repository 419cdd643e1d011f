package pool

import (
	"fmt"
	"slices"
	"time"
)

// Crash is one death of a replica that the control loop blames on a model:
// the replica exited (or was killed for memory) while the model was
// loading or had requests in flight on it. A replica that dies with
// several such models blames each of them.
type Crash struct {
	Model   string
	Replica string
	At      time.Time
}

// Quarantine returns the models to quarantine at now, each with its
// reason: those with at least Policy.CrashLimit crashes within the
// CrashWindow before now. Crashes after now are ignored (a replayed
// history). Models already quarantined stay so whatever this returns:
// Plan keeps a quarantine until the caller clears Model.Quarantine.
func Quarantine(now time.Time, crashes []Crash, p Policy) map[string]string {
	p = p.withDefaults()
	recent := map[string][]Crash{}
	for _, c := range crashes {
		if c.At.After(now) || now.Sub(c.At) >= p.CrashWindow {
			continue
		}
		recent[c.Model] = append(recent[c.Model], c)
	}
	out := map[string]string{}
	for model, cs := range recent {
		if len(cs) < p.CrashLimit {
			continue
		}
		last := slices.MaxFunc(cs, func(a, b Crash) int { return a.At.Compare(b.At) })
		replicas := map[string]bool{}
		for _, c := range cs {
			replicas[c.Replica] = true
		}
		out[model] = fmt.Sprintf("crashed its replica %d times within %v (on %d replicas; the last on replica %s at %s); the pool no longer places it: deploy a fixed version to clear the quarantine",
			len(cs), p.CrashWindow, len(replicas), last.Replica, last.At.UTC().Format(time.RFC3339))
	}
	return out
}
