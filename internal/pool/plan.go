package pool

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Defaults for Policy fields left zero.
const (
	DefaultReplicas       = 2
	DefaultTargetInFlight = 4
	DefaultShrinkBelow    = 0.6
	DefaultShrinkAfter    = 2 * time.Minute
	DefaultCrashLimit     = 3
	DefaultCrashWindow    = 10 * time.Minute
)

// Policy is a pool's placement policy. The zero value is usable.
type Policy struct {
	// Replicas is the base shard width k: how many replicas each model
	// is placed on; default DefaultReplicas.
	Replicas int
	// TargetInFlight is the load per replica (requests in flight or held)
	// above which a model's shard widens; default DefaultTargetInFlight.
	// TargetRate, in requests per second per replica, is a second such
	// target; 0 leaves it out.
	TargetInFlight float64
	TargetRate     float64
	// ShrinkBelow (0 to 1) is the fraction of the targets a narrower
	// shard must carry its load at, and ShrinkAfter how long the load must
	// stay that low, before a widened shard narrows.
	ShrinkBelow float64
	ShrinkAfter time.Duration
	// CrashLimit crashes within CrashWindow quarantine a model.
	CrashLimit  int
	CrashWindow time.Duration
	// DefaultBytes is the size assumed for a model never measured; 0
	// means the mean of the models measured in the pool.
	DefaultBytes int64
}

func (p Policy) withDefaults() Policy {
	if p.Replicas <= 0 {
		p.Replicas = DefaultReplicas
	}
	if p.TargetInFlight <= 0 {
		p.TargetInFlight = DefaultTargetInFlight
	}
	if p.ShrinkBelow <= 0 || p.ShrinkBelow > 1 {
		p.ShrinkBelow = DefaultShrinkBelow
	}
	if p.ShrinkAfter <= 0 {
		p.ShrinkAfter = DefaultShrinkAfter
	}
	if p.CrashLimit <= 0 {
		p.CrashLimit = DefaultCrashLimit
	}
	if p.CrashWindow <= 0 {
		p.CrashWindow = DefaultCrashWindow
	}
	return p
}

// LoadState is a model's state on a replica, as the replica's repository
// index names it.
type LoadState string

const (
	Ready       LoadState = "READY"
	Loading     LoadState = "LOADING"
	Unavailable LoadState = "UNAVAILABLE" // its load failed; Reason says why
)

// Hosted is one model in a replica's repository index.
type Hosted struct {
	Model string
	State LoadState
	// Bytes is the size the replica measured after the load; 0 while
	// loading or unknown.
	Bytes    int64
	LastUsed time.Time
	InFlight int
	Reason   string
}

// Replica is one replica of the pool: its slot ID, memory budget and
// repository index.
type Replica struct {
	ID     string
	Budget int64
	Models []Hosted
}

// Demand is one model's recent load, from the gateway's stats: requests
// in flight (mean over the window), per second, and held now waiting for
// the model to load. A model with none of them has no demand: Plan loads
// it nowhere, and unloads it only to make room.
type Demand struct {
	Model    string
	InFlight float64
	Rate     float64
	Held     int
}

func (d Demand) active() bool { return d.InFlight > 0 || d.Rate > 0 || d.Held > 0 }

// Model is what the pool remembers of one model between plans.
type Model struct {
	// Bytes is the largest size a replica measured for it; 0 unknown.
	Bytes int64
	Width Width
	// Quarantine, when not empty, is why the model is quarantined.
	Quarantine string
}

// State is the pool as the control loop last saw it.
type State struct {
	Replicas []Replica
	Models   map[string]Model
	Crashes  []Crash
}

// ActionKind is Load or Unload.
type ActionKind string

const (
	Load   ActionKind = "load"
	Unload ActionKind = "unload"
)

// Action is one load or unload on one replica.
type Action struct {
	Kind    ActionKind
	Replica string
	Model   string
	// Bytes is the size the plan counted: the expected size of a load
	// (measured before, or the estimate), the size an unload frees.
	Bytes  int64
	Reason string
}

// Decision is what Plan decided.
type Decision struct {
	// Actions lists, replica by replica in ID order, its unloads, then its
	// loads. A replica's loads fit its budget once its unloads are done.
	Actions []Action
	// Routes maps each model to the replicas, in ID order, that hold it
	// or load it once Actions are applied: where the gateway sends it.
	Routes map[string][]string
	// Models holds the new record of every model whose record the plan
	// changed (a size measured, a width, a quarantine); merge it into
	// State.Models for the next plan.
	Models map[string]Model
	// Unplaced says why a model with demand is missing from some replica
	// of its shard (quarantined, too large, no room, a failed load).
	Unplaced map[string]error
}

// Plan decides, at now, what each replica of the pool loads and unloads
// for demand (see the package doc). It loads each model with demand on
// the replicas of its shard that lack it, widened for its load; unloads
// quarantined models, and idle ones outside their shard; and makes room
// for each load by unloading the least recently used models of that
// replica, never one with a request in flight, one still loading, or one
// with demand on that replica. No replica's planned memory (measured
// sizes, estimates for the rest) exceeds its budget after the actions,
// unless it was over already and holds nothing it may evict.
func Plan(now time.Time, s State, demand []Demand, p Policy) Decision {
	return plan(now, s, demand, p, true)
}

// PlanActions is Plan without Decision.Routes (nil): for a caller that
// routes each model itself, as the control loop does (only where a load
// is READY), and plans often over many models: the routes of every hosted
// model are most of a plan's work.
func PlanActions(now time.Time, s State, demand []Demand, p Policy) Decision {
	return plan(now, s, demand, p, false)
}

func plan(now time.Time, s State, demand []Demand, p Policy, withRoutes bool) Decision {
	p = p.withDefaults()
	hosted := 0
	for _, r := range s.Replicas {
		hosted += len(r.Models)
	}
	d := Decision{Models: map[string]Model{}, Unplaced: map[string]error{}}
	if withRoutes {
		d.Routes = make(map[string][]string, hosted)
	}
	rec := func(model string) Model {
		if m, ok := d.Models[model]; ok {
			return m
		}
		return s.Models[model]
	}
	set := func(model string, m Model) {
		if rec(model) != m {
			d.Models[model] = m
		}
	}

	estimate := estimateBytes(s, p)
	ids := make([]string, 0, len(s.Replicas))
	reps := make(map[string]*replicaPlan, len(s.Replicas))
	for i := range s.Replicas {
		r := &s.Replicas[i]
		if _, dup := reps[r.ID]; dup {
			continue
		}
		ids = append(ids, r.ID)
		reps[r.ID] = newReplicaPlan(r, estimate)
		for _, h := range r.Models {
			if m := rec(h.Model); h.Bytes > m.Bytes {
				m.Bytes = h.Bytes
				set(h.Model, m)
			}
		}
	}
	slices.Sort(ids)
	rk := newRanker(ids)
	n := len(ids)

	for model, reason := range Quarantine(now, s.Crashes, p) {
		if m := rec(model); m.Quarantine == "" {
			m.Quarantine = reason
			set(model, m)
		}
	}

	// Models with demand, the most pressing first: they load first, and
	// what they protect cannot be evicted for later ones.
	demand = mergeDemand(demand)
	var loads []pending
	for _, dm := range demand {
		m := rec(dm.Model)
		switch {
		case m.Quarantine != "":
			d.Unplaced[dm.Model] = fmt.Errorf("model %s is quarantined: %s", dm.Model, m.Quarantine)
			continue
		case n == 0:
			d.Unplaced[dm.Model] = fmt.Errorf("model %s: the pool has no replicas", dm.Model)
			continue
		}
		m.Width = Widen(now, m.Width, dm, n, p)
		set(dm.Model, m)
		for _, id := range rk.rank(dm.Model, m.Width.Replicas) {
			rp := reps[id]
			rp.protected[dm.Model] = true
			h, ok := rp.holds(dm.Model)
			switch {
			case !ok:
				loads = append(loads, pending{id, dm.Model})
			case h.State == Unavailable:
				d.Unplaced[dm.Model] = fmt.Errorf("model %s failed to load on replica %s: %s", dm.Model, id, h.Reason)
			}
		}
	}
	demanded := make(map[string]bool, len(demand))
	for _, dm := range demand {
		demanded[dm.Model] = true
	}

	// Unloads that need no room: quarantined models, and idle ones that
	// are outside their (possibly narrowed) shard.
	for _, id := range ids {
		rp := reps[id]
		for _, h := range rp.order {
			m := rec(h.Model)
			if !demanded[h.Model] && m.Quarantine == "" && m.Width.Replicas > p.Replicas {
				// Idle and widened: the width decays (once per plan).
				demanded[h.Model] = true
				m.Width = Widen(now, m.Width, Demand{Model: h.Model}, n, p)
				set(h.Model, m)
			}
			switch {
			case m.Quarantine != "":
				rp.unload(h, "quarantined: "+m.Quarantine)
			case h.State == Ready && h.InFlight == 0 && !rp.protected[h.Model] &&
				!rk.inShard(h.Model, id, max(m.Width.Replicas, p.Replicas)):
				rp.unload(h, "outside its shard")
			}
		}
	}

	for _, l := range loads {
		rp := reps[l.replica]
		size := rec(l.model).Bytes
		if size > rp.budget {
			d.Unplaced[l.model] = &TooLargeError{Model: l.model, Bytes: size, Budget: rp.budget}
			continue
		}
		if size == 0 {
			size = estimate
		}
		if err := rp.makeRoom(size, "to make room for "+l.model); err != nil {
			d.Unplaced[l.model] = fmt.Errorf("model %s on replica %s: %w", l.model, rp.id, err)
			continue
		}
		rp.load(l.model, size)
	}
	// Each model's route starts in one shared array, room for a shard
	// each: one allocation, not one per model.
	width := min(p.Replicas, max(n, 1))
	var arena []string
	if withRoutes {
		arena = make([]string, 0, (hosted+len(loads))*width)
	}
	route := func(model, id string) {
		if !withRoutes {
			return
		}
		r, ok := d.Routes[model]
		if !ok {
			r, arena = arena[len(arena):len(arena):len(arena)+width], arena[:len(arena)+width]
		}
		d.Routes[model] = append(r, id)
	}
	for _, id := range ids {
		rp := reps[id]
		// A replica over budget without loads (a model measured larger
		// than it was counted) sheds idle models too.
		_ = rp.makeRoom(0, "over the replica's budget")
		d.Actions = append(d.Actions, rp.unloads...)
		d.Actions = append(d.Actions, rp.loads...)
		for _, h := range rp.order {
			if !rp.gone[h.Model] && h.State != Unavailable {
				route(h.Model, id)
			}
		}
		for _, a := range rp.loads {
			route(a.Model, id)
		}
	}
	for _, r := range d.Routes {
		slices.Sort(r)
	}
	return d
}

// pending is a load the plan wants, before room is made for it.
type pending struct{ replica, model string }

// mergeDemand sums duplicate entries, drops those without demand and
// orders the rest: most held, most in flight, highest rate, then name.
func mergeDemand(in []Demand) []Demand {
	by := map[string]int{}
	var out []Demand
	for _, d := range in {
		if !d.active() {
			continue
		}
		if i, ok := by[d.Model]; ok {
			out[i].InFlight += d.InFlight
			out[i].Rate += d.Rate
			out[i].Held += d.Held
			continue
		}
		by[d.Model] = len(out)
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Demand) int {
		return cmp.Or(cmp.Compare(b.Held, a.Held), cmp.Compare(b.InFlight, a.InFlight),
			cmp.Compare(b.Rate, a.Rate), cmp.Compare(a.Model, b.Model))
	})
	return out
}

// estimateBytes is the size counted for a model never measured:
// Policy.DefaultBytes, else the mean of the sizes replicas measured.
func estimateBytes(s State, p Policy) int64 {
	if p.DefaultBytes > 0 {
		return p.DefaultBytes
	}
	var sum, n int64
	for _, r := range s.Replicas {
		for _, h := range r.Models {
			if h.Bytes > 0 {
				sum += h.Bytes
				n++
			}
		}
	}
	if n == 0 {
		return 0
	}
	return sum / n
}
