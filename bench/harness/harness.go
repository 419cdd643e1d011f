// Package harness runs ebb's benchmarks against its peers: it holds the
// Scenario contract that each benchmark implements, an ordered Registry of
// scenarios, the Env a scenario runs in (pinned processes it starts and
// stops, free ports, the wrk load generator, an ebb instance helper) and the
// writers of bench/RESULTS.md and bench/results.json.
//
// A scenario reports ebb's figure next to a peer's figure and their ratio as
// Goals; every goal is written as MET or NOT MET, never dropped. A scenario
// that fails is reported with its error and its goals marked NOT MET.
package harness

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Scenario is one benchmark. Run must bound its load in requests and time,
// start processes only through env (so that they are stopped afterwards) and
// return the figures it measured. Run is called once per harness run.
type Scenario interface {
	// Name is the short identifier used to select the scenario (-run).
	Name() string
	// Title is the heading of the scenario's section in RESULTS.md.
	Title() string
	// Run measures the scenario.
	Run(ctx context.Context, env *Env) (Result, error)
}

// Result is what a scenario measured.
type Result struct {
	// Summary is a short paragraph on how the scenario was measured.
	Summary string `json:"summary,omitempty"`
	// Goals compare ebb's figure with a peer's or with a target.
	Goals []Goal `json:"goals"`
	// Tables hold the raw figures, as shown in RESULTS.md.
	Tables []Table `json:"tables,omitempty"`
	// Figures are the raw figures under stable dotted keys, for machines.
	Figures map[string]float64 `json:"figures,omitempty"`
	// Notes are observations worth a reader's attention (anomalies, errors
	// seen, caveats of the measurement).
	Notes []string `json:"notes,omitempty"`
}

// Goal is one claim checked against a measurement.
type Goal struct {
	// Name says what is claimed, e.g. "throughput vs nginx".
	Name string `json:"name"`
	// Target states the goal, e.g. "ebb ≥ 0.9× nginx".
	Target string `json:"target"`
	// Ebb and Peer are the two figures compared, in Unit; Peer is zero when
	// the goal is an absolute target.
	Ebb  float64 `json:"ebb"`
	Peer float64 `json:"peer,omitempty"`
	// PeerName names the peer ("nginx").
	PeerName string `json:"peerName,omitempty"`
	Unit     string `json:"unit"`
	// Ratio is Ebb/Peer when there is a peer.
	Ratio float64 `json:"ratio,omitempty"`
	Met   bool    `json:"met"`
	// Detail explains the verdict with the numbers.
	Detail string `json:"detail,omitempty"`
}

// Table is a table of raw figures.
type Table struct {
	Caption string     `json:"caption,omitempty"`
	Header  []string   `json:"header"`
	Rows    [][]string `json:"rows"`
}

// Ratio returns a/b, or 0 when b is 0.
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Registry is an ordered set of scenarios with unique names.
type Registry struct {
	list []Scenario
}

// Register adds s; it fails if a scenario with the same name is present.
func (r *Registry) Register(s Scenario) error {
	if slices.ContainsFunc(r.list, func(x Scenario) bool { return x.Name() == s.Name() }) {
		return fmt.Errorf("scenario %q registered twice", s.Name())
	}
	r.list = append(r.list, s)
	return nil
}

// Names returns the registered names in order.
func (r *Registry) Names() []string {
	out := make([]string, len(r.list))
	for i, s := range r.list {
		out[i] = s.Name()
	}
	return out
}

// Select returns the scenarios named in the comma-separated list, in
// registration order; an empty list or "all" selects every scenario.
func (r *Registry) Select(list string) ([]Scenario, error) {
	list = strings.TrimSpace(list)
	if list == "" || list == "all" {
		return slices.Clone(r.list), nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !slices.Contains(r.Names(), n) {
			return nil, fmt.Errorf("unknown scenario %q: choose from %s", n, strings.Join(r.Names(), ", "))
		}
		want[n] = true
	}
	var out []Scenario
	for _, s := range r.list {
		if want[s.Name()] {
			out = append(out, s)
		}
	}
	return out, nil
}

// Outcome is one scenario's run as reported.
type Outcome struct {
	Name    string  `json:"name"`
	Title   string  `json:"title"`
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"`
	// Leftovers lists processes still alive after the scenario's processes
	// were stopped (they were then killed).
	Leftovers []string `json:"leftovers,omitempty"`
	// BusyBefore is the share of the machine's CPUs (0..100) busy in the
	// second before the scenario started, whoever used them; LoadBefore and
	// LoadAfter are the one-minute load averages around it. They say how
	// quiet the shared machine was.
	BusyBefore float64 `json:"machineBusyPercentBefore"`
	LoadBefore float64 `json:"loadAverageBefore"`
	LoadAfter  float64 `json:"loadAverageAfter"`
	// StolenPercent is the share of all CPUs' time during the scenario
	// that the hypervisor gave to other guests (CPUSample.StolenSince).
	StolenPercent float64 `json:"stolenPercent"`
	Result
}
