package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// History is the registry as undo uses it: which versions served a
// deployment when, what a reference resolves to, and alias moves that
// fail (store.ErrConflict) when the alias moved meanwhile.
// *registry.Service is one.
type History interface {
	ServingHistory(ctx context.Context, deployment string) ([]registry.ServingRecord, error)
	Resolve(ctx context.Context, ref registry.Ref) (registry.Version, error)
	MoveAlias(ctx context.Context, model, alias string, to, expectFrom int, by string) (registry.AliasMove, error)
}

// UndoRequest is what `ebb rollout undo` asks for.
type UndoRequest struct {
	// ToRevision is the revision of `ebb rollout history` to go back to
	// (1 is the first); 0 means the version that served before the
	// current one.
	ToRevision int `json:"toRevision,omitempty"`
	// Check, when set, is asked before the deployment moves to version
	// ("diabetes:1"); its error is returned as it is. The API checks there
	// that the caller may run that version.
	Check func(ctx context.Context, version string) error `json:"-"`
}

// UndoResult says what an undo did.
type UndoResult struct {
	Deployment string `json:"deployment"`
	// From is the version the deployment served ("diabetes:2"); "" when
	// its spec named a path.
	From string `json:"from,omitempty"`
	// To is the version it serves now ("diabetes:1"), and Revision its
	// revision in `ebb rollout history`.
	To       string `json:"to"`
	Revision int    `json:"revision"`
	// Model is the deployment's spec.model now.
	Model string `json:"model"`
	// AliasMoved reports that the alias spec.model follows was moved
	// (which moves every deployment that follows it); otherwise spec.model
	// was set to To.
	AliasMoved bool `json:"aliasMoved"`
}

// Undo moves deployment back, at once and without a canary, to the version
// that served it before the current one, or to revision req.ToRevision of
// its serving history. A deployment that follows an alias of that version's
// model has the alias moved (recorded as by rollout undo); any other gets
// spec.model set to the version. It is refused with ErrActive while a
// rollout of the deployment is active or its traffic is split, and with
// ErrInvalid when there is no such earlier version or it can no longer
// serve (purged, or its model deleted). A concurrent change of the alias or
// spec is store.ErrConflict, and nothing changes.
func (m *Manager) Undo(ctx context.Context, deployment string, req UndoRequest, by string) (UndoResult, error) {
	h := m.opts.History
	if h == nil {
		return UndoResult{}, refuse(ErrInvalid, "this ebb has no model registry, so it keeps no serving history to undo with")
	}
	if req.ToRevision < 0 {
		return UndoResult{}, refuse(ErrInvalid, "--to-revision %d: revisions are numbered from 1 (`ebb rollout history %s`)", req.ToRevision, deployment)
	}
	d, err := m.deps.GetDeployment(ctx, deployment)
	if err != nil {
		return UndoResult{}, err
	}
	if err := m.noRollout(ctx, d); err != nil {
		return UndoResult{}, err
	}
	spec, follows := serving.ParseModelRef(d.Spec.Model)
	cur := spec
	if follows && spec.Alias != "" {
		v, err := h.Resolve(ctx, spec)
		if err != nil {
			return UndoResult{}, refuse(ErrInvalid, "deployment %q follows %s, which does not resolve (%v): set spec.model, or move the alias (`ebb models alias`)", deployment, d.Spec.Model, err)
		}
		cur = registry.Ref{Model: v.Model, Version: v.Version}
	}
	hist, err := h.ServingHistory(ctx, deployment)
	if err != nil {
		return UndoResult{}, err
	}
	rev, err := target(deployment, hist, cur, req.ToRevision)
	if err != nil {
		return UndoResult{}, err
	}
	to := registry.Ref{Model: hist[rev-1].Model, Version: hist[rev-1].Version}
	res := UndoResult{Deployment: deployment, To: to.String(), Revision: rev, Model: to.String()}
	if cur.Version > 0 {
		res.From = cur.String()
	}
	if err := m.canServe(ctx, deployment, to, req.Check); err != nil {
		return UndoResult{}, err
	}

	if follows && spec.Alias != "" && spec.Model == to.Model {
		who := "rollout undo"
		if by != "" {
			who += " (" + by + ")"
		}
		if _, err := h.MoveAlias(ctx, spec.Model, spec.Alias, to.Version, cur.Version, who); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return UndoResult{}, fmt.Errorf("cannot undo: alias %s moved meanwhile, and nothing changed: see `ebb rollout history %s` and try again: %w", d.Spec.Model, deployment, err)
			}
			return UndoResult{}, fmt.Errorf("cannot undo: move %s to %s: %w", d.Spec.Model, to, err)
		}
		res.Model, res.AliasMoved = d.Spec.Model, true
	} else {
		_, err := m.deps.UpdateDeployment(ctx, deployment, func(nd *serving.Deployment) error {
			if nd.Spec.Model != d.Spec.Model || len(nd.Spec.Traffic) > 0 {
				return fmt.Errorf("cannot undo: deployment %q changed meanwhile (spec.model %s), and nothing changed: try again: %w", deployment, nd.Spec.Model, store.ErrConflict)
			}
			nd.Spec.Model = to.String()
			return nil
		})
		if err != nil {
			return UndoResult{}, err
		}
		m.opts.Notify(deployment)
	}

	how := "spec.model set to " + to.String()
	if res.AliasMoved {
		how = fmt.Sprintf("alias %s moved to %d", d.Spec.Model, to.Version)
	}
	msg := fmt.Sprintf("%s → %s (revision %d of its history): %s", orPath(res.From, d.Spec.Model), to, rev, how)
	if by != "" {
		msg += ", by " + by
	}
	m.opts.Logger.Info("rollout undone", "deployment", deployment, "from", res.From, "to", res.To, "revision", rev, "aliasMoved", res.AliasMoved)
	m.opts.Event(deployment, "Normal", "RolloutUndone", msg)
	return res, nil
}

// noRollout refuses to undo under an active rollout or a traffic split,
// which would fight the undo over the deployment's spec.
func (m *Manager) noRollout(ctx context.Context, d serving.Deployment) error {
	all, err := m.st.ListRollouts(ctx, d.Name)
	if err != nil {
		return err
	}
	if i := slices.IndexFunc(all, func(r store.Rollout) bool { return r.Active }); i >= 0 {
		how := "end it first"
		if all[i].Kind == store.RolloutCanary {
			how = fmt.Sprintf("`ebb rollout status %s` shows it; abort it first (`ebb rollout abort %s`)", d.Name, d.Name)
		}
		return refuse(ErrActive, "deployment %q has an active %s rollout: %s", d.Name, all[i].Kind, how)
	}
	if len(d.Spec.Traffic) > 0 {
		return refuse(ErrActive, "deployment %q splits its traffic (spec.traffic): remove the split first", d.Name)
	}
	return nil
}

// target picks the revision (1-based) of hist to go back to: toRevision,
// or else the latest that is not cur.
func target(deployment string, hist []registry.ServingRecord, cur registry.Ref, toRevision int) (int, error) {
	same := func(r registry.ServingRecord) bool { return r.Model == cur.Model && r.Version == cur.Version }
	if toRevision > 0 {
		switch {
		case toRevision > len(hist):
			return 0, refuse(ErrInvalid, "--to-revision %d: deployment %q has %d revisions (`ebb rollout history %s`)", toRevision, deployment, len(hist), deployment)
		case same(hist[toRevision-1]):
			return 0, refuse(ErrInvalid, "--to-revision %d: deployment %q already serves %s", toRevision, deployment, cur)
		}
		return toRevision, nil
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if !same(hist[i]) {
			return i + 1, nil
		}
	}
	now := "yet"
	if cur.Version > 0 {
		now = "than " + cur.String()
	}
	return 0, refuse(ErrInvalid, "deployment %q has served no other registry version %s (`ebb rollout history %s`)", deployment, now, deployment)
}

// canServe refuses a version that can no longer serve, or that check
// refuses.
func (m *Manager) canServe(ctx context.Context, deployment string, to registry.Ref, check func(context.Context, string) error) error {
	v, err := m.opts.History.Resolve(ctx, to)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refuse(ErrInvalid, "%s is no longer in the registry: push it again, or pick another revision with --to-revision (`ebb rollout history %s`)", to, deployment)
	case err != nil:
		return err
	case v.State == registry.StatePurged:
		return refuse(ErrInvalid, "%s was retired and its artifact deleted, so it cannot serve again: push it again, or pick another revision with --to-revision (`ebb rollout history %s`)", to, deployment)
	}
	if check != nil {
		return check(ctx, to.String())
	}
	return nil
}

// undoError is an undo refused: it reads "cannot undo: ..." and is
// ErrInvalid or ErrActive.
type undoError struct {
	kind error
	msg  string
}

func (e *undoError) Error() string { return "cannot undo: " + e.msg }
func (e *undoError) Unwrap() error { return e.kind }

func refuse(kind error, format string, args ...any) error {
	return &undoError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// orPath is version, or the path the deployment served when it named no
// version.
func orPath(version, model string) string {
	if version != "" {
		return version
	}
	return model
}
