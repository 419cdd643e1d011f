package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ebb-ml/ebb/internal/store"
)

// ModelDeleter is a Store that can delete a model's records: the model, its
// versions, its aliases and their history (a deployment's serving records
// stay: they are the deployment's history). DeleteModel returns an error
// wrapping store.ErrNotFound when the model does not exist. Service calls
// it only once every version of the model is purged and no alias is left;
// a store without it cannot delete whole models (Service.DeleteModel is
// then errors.ErrUnsupported).
type ModelDeleter interface {
	DeleteModel(ctx context.Context, name string) error
}

// UsedBy names the deployments that name or run model's version; nil or
// empty when none. The API computes it from deployments and their status,
// in both homes.
type UsedBy func(model string, version int) []string

// InUseError refuses to delete what is still referenced, naming what
// references it.
type InUseError struct {
	// Subject is what was to be deleted: "diabetes:3" or "model diabetes".
	Subject string
	// Model is the model's name.
	Model string
	// Aliases are the model's aliases that point at the version(s), as
	// "champion" (for a model: "champion → 3").
	Aliases []string
	// Deployments name or run the version(s).
	Deployments []string
}

func (e *InUseError) Error() string {
	var refs, fixes []string
	if len(e.Aliases) > 0 {
		refs = append(refs, "alias "+strings.Join(e.Aliases, ", "))
		fixes = append(fixes, fmt.Sprintf("move or delete the alias (`ebb models alias %s ALIAS VERSION` or `--delete`)", e.Model))
	}
	if len(e.Deployments) > 0 {
		refs = append(refs, "deployment "+strings.Join(e.Deployments, ", "))
		fixes = append(fixes, "point the deployment at another version or delete it")
	}
	return fmt.Sprintf("cannot delete %s: it is in use by %s: %s first", e.Subject, strings.Join(refs, " and "), strings.Join(fixes, ", and "))
}

// DeleteVersion deletes one version: it becomes purged, its artifact is
// deleted when the ArtifactStore is an ArtifactDeleter and no other
// version that is not purged has the same artifact, and its record stays
// for lineage and serving history (its number is never reused). A version
// that an alias points at, or that usedBy (may be nil) reports in use, is
// refused with an *InUseError and nothing changes. Deleting a purged
// version changes nothing. Errors wrap store.ErrNotFound when the version
// does not exist.
//
// The check and the purge are two steps: an alias moved to the version in
// between is seen by a second check, which puts the version back and
// refuses; a deployment created in between fails to resolve the version,
// with a clear status.
func (s *Service) DeleteVersion(ctx context.Context, model string, version int, usedBy UsedBy) (Version, error) {
	v, err := s.st.GetVersion(ctx, model, version)
	if err != nil {
		return Version{}, err
	}
	if v.State == StatePurged {
		return v, nil
	}
	if err := s.checkUnused(ctx, model, []Version{v}, usedBy, v.Ref().String()); err != nil {
		return Version{}, err
	}
	purged, err := s.purge(ctx, v)
	if err != nil {
		return Version{}, err
	}
	if err := s.checkUnused(ctx, model, []Version{v}, usedBy, v.Ref().String()); err != nil {
		s.unpurge(ctx, v)
		return Version{}, err
	}
	s.log.Info("model version deleted", "model", model, "version", version, "was", v.State)
	s.deleteArtifacts(ctx, []Version{v})
	return purged, nil
}

// DeleteModel deletes a model with every version. It is refused with an
// *InUseError, and nothing changes, while any alias of the model exists or
// usedBy reports any of its versions in use; with errors.ErrUnsupported
// when the Store is not a ModelDeleter. Artifacts go as in DeleteVersion.
// Errors wrap store.ErrNotFound when the model does not exist.
func (s *Service) DeleteModel(ctx context.Context, model string, usedBy UsedBy) error {
	if _, err := s.st.GetModel(ctx, model); err != nil {
		return err
	}
	md, ok := s.st.(ModelDeleter)
	if !ok {
		return fmt.Errorf("this registry's store cannot delete whole models yet; delete its versions one by one (`ebb models delete %s:VERSION`): %w", model, errors.ErrUnsupported)
	}
	vs, err := s.allVersions(ctx, model)
	if err != nil {
		return err
	}
	subject := "model " + model
	if err := s.checkUnused(ctx, model, vs, usedBy, subject); err != nil {
		return err
	}
	var purged []Version
	for _, v := range vs {
		if v.State == StatePurged {
			continue
		}
		if _, err := s.purge(ctx, v); err != nil {
			for _, p := range purged {
				s.unpurge(ctx, p)
			}
			return err
		}
		purged = append(purged, v)
	}
	if err := s.checkUnused(ctx, model, vs, usedBy, subject); err != nil {
		for _, p := range purged {
			s.unpurge(ctx, p)
		}
		return err
	}
	if err := md.DeleteModel(ctx, model); err != nil {
		return err
	}
	s.log.Info("model deleted", "model", model, "versions", len(vs))
	s.deleteArtifacts(ctx, purged)
	return nil
}

// checkUnused returns an *InUseError when an alias of model points at one
// of vs or usedBy reports one in use.
func (s *Service) checkUnused(ctx context.Context, model string, vs []Version, usedBy UsedBy, subject string) error {
	aliases, err := s.st.ListAliases(ctx, model)
	if err != nil {
		return err
	}
	of := map[int]bool{}
	for _, v := range vs {
		of[v.Version] = true
	}
	e := &InUseError{Subject: subject, Model: model}
	for _, a := range aliases {
		if !of[a.Version] {
			continue
		}
		name := a.Name
		if len(vs) > 1 {
			name = fmt.Sprintf("%s → %d", a.Name, a.Version)
		}
		e.Aliases = append(e.Aliases, name)
	}
	if usedBy != nil {
		for _, v := range vs {
			e.Deployments = append(e.Deployments, usedBy(model, v.Version)...)
		}
	}
	slices.Sort(e.Deployments)
	e.Deployments = slices.Compact(e.Deployments)
	if len(e.Aliases) > 0 || len(e.Deployments) > 0 {
		return e
	}
	return nil
}

// purge moves v from its state to purged.
func (s *Service) purge(ctx context.Context, v Version) (Version, error) {
	out, err := s.st.SetVersionState(ctx, v.Model, v.Version, v.State, StatePurged, s.now())
	if errors.Is(err, store.ErrConflict) {
		return Version{}, fmt.Errorf("%s changed state meanwhile (retirement or use): try again: %w", v.Ref(), err)
	}
	if err == nil {
		s.met.transition(StatePurged)
	}
	return out, err
}

// unpurge puts v back into the state it had before purge.
func (s *Service) unpurge(ctx context.Context, v Version) {
	if _, err := s.st.SetVersionState(ctx, v.Model, v.Version, StatePurged, v.State, s.now()); err != nil {
		s.log.Error("cannot restore a version whose deletion was refused", "model", v.Model, "version", v.Version, "state", v.State, "err", err)
	}
}

// allVersions lists every version of model.
func (s *Service) allVersions(ctx context.Context, model string) ([]Version, error) {
	var all []Version
	for after := 0; ; {
		vs, err := s.st.ListVersions(ctx, model, VersionListOptions{After: after, Limit: pageSize})
		if err != nil {
			return nil, err
		}
		all = append(all, vs...)
		if len(vs) < pageSize {
			return all, nil
		}
		after = vs[len(vs)-1].Version
	}
}

// deleteArtifacts deletes the artifacts of purged versions that no version
// still unpurged shares (artifacts are stored by content), when the
// ArtifactStore can delete. Failures are logged: the versions stay purged.
func (s *Service) deleteArtifacts(ctx context.Context, purged []Version) {
	deleter, ok := s.art.(ArtifactDeleter)
	if !ok || len(purged) == 0 {
		return
	}
	kept := map[string]bool{}
	for after := ""; ; {
		models, err := s.st.ListModels(ctx, ListOptions{After: after, Limit: pageSize})
		if err != nil {
			s.log.Error("cannot check whether deleted versions' artifacts are shared; keeping them", "err", err)
			return
		}
		for _, m := range models {
			vs, err := s.allVersions(ctx, m.Name)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				s.log.Error("cannot check whether deleted versions' artifacts are shared; keeping them", "err", err)
				return
			}
			for _, v := range vs {
				if v.State != StatePurged {
					kept[v.ArtifactURI] = true
				}
			}
		}
		if len(models) < pageSize {
			break
		}
		after = models[len(models)-1].Name
	}
	for _, v := range purged {
		if kept[v.ArtifactURI] {
			continue
		}
		kept[v.ArtifactURI] = true // delete once
		if err := deleter.Delete(ctx, v.ArtifactURI); err != nil {
			s.log.Error("cannot delete a deleted version's artifact", "model", v.Model, "version", v.Version,
				"artifact", v.ArtifactURI, "err", err)
		}
	}
}
