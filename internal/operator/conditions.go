package operator

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/traffic"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types of a ModelDeployment's rollout and shadow.
const (
	// ConditionRollout is True while a canary rollout (`ebb rollout
	// start`) is Progressing or Paused, and False once it Succeeded,
	// RolledBack or was Aborted; its Reason is the phase. It stays after
	// the rollout ended, until the next one starts.
	ConditionRollout = "Rollout"
	// ConditionShadow is True while the deployment's shadow (spec.shadow)
	// mirrors requests (Reason Mirroring), and False once its request
	// count or end time is reached (Reason Done); the message has what the
	// gateways compared and the verdict by the default criteria. It goes
	// with spec.shadow.
	ConditionShadow = "Shadow"
)

// Reasons of the Shadow condition.
const (
	ReasonMirroring = "Mirroring"
	ReasonDone      = "Done"
)

// rolloutClockSkew is how much earlier than its ModelDeployment's creation
// a rollout may have been created, as the two clocks read (the operator's
// for rollouts, the API server's for ModelDeployments), and still be the
// ModelDeployment's. A rollout created before that was a deleted
// ModelDeployment's of the same name, and is not shown.
const rolloutClockSkew = 2 * time.Second

// shadowFiguresEvery is how often the Shadow condition's figures
// (compared, agreement) are refreshed while the shadow mirrors. Each
// refresh that changes them is a status write; ebb shadow status has the
// live figures.
const shadowFiguresEvery = 10 * time.Second

// maxConditionMessage bounds a condition's message (the API allows 32768
// bytes).
const maxConditionMessage = 4096

// RolloutStates keeps the latest status of each deployment's canary
// rollout as the rollout manager reports it (rollout.Options.State): what
// the status writer shows as the Rollout condition. Only the leader runs
// rollouts; until its manager reported a deployment's rollout (a new
// leader's first pass reports every active one), that deployment's
// condition stays as it is. It is safe for concurrent use.
type RolloutStates struct {
	mu sync.Mutex
	m  map[string]rollout.Status
}

// NewRolloutStates returns empty RolloutStates.
func NewRolloutStates() *RolloutStates {
	return &RolloutStates{m: map[string]rollout.Status{}}
}

// Set keeps s as deployment's rollout, unless what is kept is newer: a
// rollout created after s's, or a later report of the same rollout (by
// UpdatedAt, or in a final phase where s is not: reports of a pass and of
// a change by hand may cross).
func (r *RolloutStates) Set(deployment string, s rollout.Status) {
	s.History = nil // the condition shows none of it
	r.mu.Lock()
	defer r.mu.Unlock()
	if held, ok := r.m[deployment]; ok {
		switch {
		case held.ID != s.ID && s.CreatedAt.Before(held.CreatedAt):
			return
		case held.ID == s.ID && (s.UpdatedAt.Before(held.UpdatedAt) || held.Phase.Final() && !s.Phase.Final()):
			return
		}
	}
	r.m[deployment] = s
}

// Get returns deployment's latest rollout; false when none was reported.
func (r *RolloutStates) Get(deployment string) (rollout.Status, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.m[deployment]
	return s, ok
}

// setCondition sets condition typ of conds, keeping its transition time
// unless its status changes (meta.SetStatusCondition).
func setCondition(conds *[]metav1.Condition, typ string, ok bool, reason, msg string, gen int64, now time.Time) {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	if len(msg) > maxConditionMessage {
		msg = strings.ToValidUTF8(msg[:maxConditionMessage-len("…")], "") + "…"
	}
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: gen, LastTransitionTime: metav1.NewTime(now),
	})
}

// rolloutCondition returns the Rollout condition of rollout s: whether it
// runs, its reason (the phase) and message; ok is false for a phase it
// does not know. A running rollout's message names the canary, its weight
// and step, and not what it waits for, which changes every pass.
func rolloutCondition(s rollout.Status) (running bool, reason, msg string, ok bool) {
	switch s.Phase {
	case traffic.Progressing, traffic.Paused:
		msg = fmt.Sprintf("canary %s at %d%% (step %d of %d)", s.To, s.Weight, s.Step+1, len(s.Policy.Steps))
		if s.Phase == traffic.Paused && s.Reason != "" {
			msg += "; " + s.Reason
		}
		return true, string(s.Phase), msg, true
	case traffic.Succeeded, traffic.RolledBack, traffic.Aborted:
		msg = "canary " + s.To
		if s.Reason != "" {
			msg += ": " + s.Reason
		}
		return false, string(s.Phase), msg, true
	}
	return false, "", "", false
}

// shadowView is what the Shadow condition shows of a deployment's shadow:
// what the gateways compared of it, as held by shadowFigures.
type shadowView struct {
	sum      traffic.Summary
	reported bool // a gateway reported the current shadow
}

// shadowMinRequests is how many judged requests the Shadow condition's
// verdict needs: the shadow's own request count, else
// rollout.DefaultShadowMinRequests (as `ebb shadow status` by default).
func shadowMinRequests(sh *serving.Shadow) int {
	if sh.Requests > 0 {
		return int(min(sh.Requests, math.MaxInt32))
	}
	return rollout.DefaultShadowMinRequests
}

// judgeShadow returns whether the shadow sh has judged its request count
// by v's figures, and its verdict by the default criteria.
func judgeShadow(sh *serving.Shadow, v shadowView) (requestsDone bool, verdict traffic.Verdict) {
	if !v.reported {
		return false, traffic.Verdict{Outcome: traffic.Pending, Reason: "no gateway reported it yet: its figures come once the deployment serves requests"}
	}
	judged := v.sum.Compared + v.sum.ShadowErrors
	return sh.Requests > 0 && judged >= sh.Requests, v.sum.Verdict(shadowMinRequests(sh), rollout.DefaultShadowMinAgreement)
}

// shadowCondition returns the Shadow condition of sh (not nil) at now by
// v's figures: whether it still mirrors, its reason and message.
func shadowCondition(sh *serving.Shadow, v shadowView, now time.Time) (mirroring bool, reason, msg string) {
	requestsDone, verdict := judgeShadow(sh, v)
	until := sh.UntilTime()
	untilDone := !until.IsZero() && !now.Before(until)
	var b strings.Builder
	switch {
	case requestsDone:
		fmt.Fprintf(&b, "done mirroring to %s: %d requests judged", sh.Model, sh.Requests)
	case untilDone:
		fmt.Fprintf(&b, "done mirroring to %s: its end, %s, passed", sh.Model, until.UTC().Format(time.RFC3339))
	default:
		fmt.Fprintf(&b, "mirroring %d%% of requests to %s", sh.PercentOrDefault(), sh.Model)
	}
	if v.reported {
		s := v.sum
		fmt.Fprintf(&b, "; compared %d", s.Compared)
		if s.Compared > 0 {
			fmt.Fprintf(&b, ", agreement %.1f%%", s.Agreement*100)
		}
		if s.ShadowErrors > 0 {
			fmt.Fprintf(&b, ", %d shadow errors", s.ShadowErrors)
		}
		if s.Dropped > 0 {
			fmt.Fprintf(&b, ", %d dropped", s.Dropped)
		}
	}
	fmt.Fprintf(&b, "; verdict %s: %s", verdict.Outcome, verdict.Reason)
	if requestsDone || untilDone {
		return false, ReasonDone, b.String()
	}
	return true, ReasonMirroring, b.String()
}

// setRolloutAndShadow sets md's Rollout and Shadow conditions in conds:
// the Rollout condition from the rollout r (nil: left as it is), the
// Shadow condition from shadow sh (nil: removed) and v.
func setRolloutAndShadow(conds *[]metav1.Condition, created time.Time, r *rollout.Status, sh *serving.Shadow, v shadowView, gen int64, now time.Time) {
	if r != nil && !r.CreatedAt.Before(created.Add(-rolloutClockSkew)) {
		if running, reason, msg, ok := rolloutCondition(*r); ok {
			setCondition(conds, ConditionRollout, running, reason, msg, gen, now)
		}
	}
	if sh == nil {
		meta.RemoveStatusCondition(conds, ConditionShadow)
		return
	}
	mirroring, reason, msg := shadowCondition(sh, v, now)
	setCondition(conds, ConditionShadow, mirroring, reason, msg, gen, now)
}

// shadowFigures holds the figures each deployment's Shadow condition
// shows, so that the status writer, which writes a status whenever it
// differs, does not write one for every request compared. The figures
// held are refreshed every shadowFiguresEvery, and at once when the shadow
// changes, when a gateway first reports it, when its first verdict comes
// and when it has judged its request count: those change the condition's
// status or outcome, which show without delay. It is safe for concurrent
// use.
type shadowFigures struct {
	every time.Duration

	// mu guards held and pruned.
	mu     sync.Mutex
	held   map[string]heldFigures
	pruned time.Time
}

type heldFigures struct {
	key  figuresKey
	view shadowView
	at   time.Time // when view was taken
	seen time.Time // when last asked for
}

// figuresKey is what of a shadow's figures shows at once when it changes.
type figuresKey struct {
	id           string
	reported     bool
	judged       bool // a verdict other than pending
	requestsDone bool
}

func newShadowFigures(every time.Duration) *shadowFigures {
	return &shadowFigures{every: every, held: map[string]heldFigures{}}
}

// show returns the figures deployment's Shadow condition shows at now,
// given its shadow sh and the gateways' current sum (reported false when
// none reported sh).
func (f *shadowFigures) show(deployment string, sh *serving.Shadow, sum traffic.Summary, reported bool, now time.Time) shadowView {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pruneLocked(now)
	if sh == nil {
		delete(f.held, deployment)
		return shadowView{}
	}
	fresh := shadowView{sum: sum, reported: reported}
	requestsDone, verdict := judgeShadow(sh, fresh)
	key := figuresKey{id: sh.ID(), reported: reported, judged: verdict.Outcome != traffic.Pending, requestsDone: requestsDone}
	h, ok := f.held[deployment]
	if !ok || h.key != key || now.Sub(h.at) >= f.every || now.Before(h.at) {
		h = heldFigures{key: key, view: fresh, at: now}
	}
	h.seen = now
	f.held[deployment] = h
	return h.view
}

// pruneLocked forgets, once a minute, the deployments not asked for in a
// minute (deleted).
func (f *shadowFigures) pruneLocked(now time.Time) {
	if now.Sub(f.pruned) < time.Minute {
		return
	}
	f.pruned = now
	for name, h := range f.held {
		if now.Sub(h.seen) > time.Minute {
			delete(f.held, name)
		}
	}
}
