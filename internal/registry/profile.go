package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/oip"
)

// A version's reference profile (monitor.Profile: per-feature statistics
// of a sample of its training data, the baseline of drift monitoring) is
// kept as JSON in the artifact store, content-addressed like artifacts,
// and the version records where in two tags. Versions are immutable but
// their tags are not, so a profile can be set, replaced or computed after
// the push, and both homes keep it with no schema of their own. A purged
// version's profile stays in the artifact store (another version may have
// the same one).
const (
	// TagProfile is the artifact URI of the version's profile.
	TagProfile = "ebb.profile"
	// TagProfileSHA256 is its SHA-256, which also identifies it.
	TagProfileSHA256 = "ebb.profile.sha256"
)

// maxProfileBytes bounds a stored profile's JSON: 1000 features of 1000
// bins fit.
const maxProfileBytes = 64 << 20

// ErrNoProfile means a version has no reference profile.
var ErrNoProfile = errors.New("the version has no reference profile")

// SetProfile stores p as the reference profile of model's version,
// replacing any it had, and returns the version with its new tags. A
// profile that is invalid (Profile.Validate) or does not fit the version's
// signature (CheckProfile) is an *InvalidError.
func (s *Service) SetProfile(ctx context.Context, model string, version int, p *monitor.Profile) (Version, error) {
	v, err := s.st.GetVersion(ctx, model, version)
	if err != nil {
		return Version{}, err
	}
	if err := p.Validate(); err != nil {
		return Version{}, &InvalidError{"invalid profile: " + err.Error()}
	}
	if err := CheckProfile(v.Signature, p); err != nil {
		return Version{}, err
	}
	data, err := json.Marshal(p)
	if err != nil {
		return Version{}, &InvalidError{"invalid profile: " + err.Error()}
	}
	uri, sum, _, err := s.art.Put(ctx, bytes.NewReader(data))
	if err != nil {
		return Version{}, fmt.Errorf("store the profile of %s: %w", v.Ref(), artifactStoreError(err))
	}
	return s.st.UpdateVersionTags(ctx, model, version, map[string]string{TagProfile: uri, TagProfileSHA256: sum}, nil)
}

// Profile returns the reference profile of model's version and its SHA-256;
// ErrNoProfile when it has none, the store's ErrNotFound when the version
// does not exist.
func (s *Service) Profile(ctx context.Context, model string, version int) (*monitor.Profile, string, error) {
	v, err := s.st.GetVersion(ctx, model, version)
	if err != nil {
		return nil, "", err
	}
	return s.VersionProfile(ctx, v)
}

// VersionProfile is Profile for a version already read.
func (s *Service) VersionProfile(ctx context.Context, v Version) (*monitor.Profile, string, error) {
	uri, sum := v.Tags[TagProfile], v.Tags[TagProfileSHA256]
	if uri == "" || sum == "" {
		return nil, "", fmt.Errorf("%s: %w", v.Ref(), ErrNoProfile)
	}
	rc, err := s.art.Open(ctx, uri, sum)
	if err != nil {
		return nil, "", fmt.Errorf("open the profile of %s at %s: %w", v.Ref(), uri, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxProfileBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("read the profile of %s at %s: %w", v.Ref(), uri, err)
	}
	if len(data) > maxProfileBytes {
		return nil, "", fmt.Errorf("the profile of %s at %s is over %d bytes", v.Ref(), uri, maxProfileBytes)
	}
	var p monitor.Profile
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, "", fmt.Errorf("the profile of %s at %s is not a profile: %w", v.Ref(), uri, err)
	}
	if err := p.Validate(); err != nil {
		return nil, "", fmt.Errorf("the profile of %s at %s: %w", v.Ref(), uri, err)
	}
	return &p, sum, nil
}

// CheckProfile reports whether p's features can be read from requests to
// and answers of a model with signature sig, as the drift monitor reads
// them: input features (and output features) named as the model's input
// (output) tensors, one feature each; or, for a model with one input
// (output) tensor that no feature is named as, one feature per column of
// that tensor, in order. A signature that does not say (no tensors, or a
// dynamic number of columns) passes.
func CheckProfile(sig Signature, p *monitor.Profile) error {
	var in, out []string
	for _, f := range p.Features {
		if f.Output {
			out = append(out, f.Name)
		} else {
			in = append(in, f.Name)
		}
	}
	if err := checkSide("input", sig.Inputs, in); err != nil {
		return err
	}
	return checkSide("output", sig.Outputs, out)
}

func checkSide(side string, tensors []oip.TensorMetadata, features []string) error {
	if len(tensors) == 0 || len(features) == 0 {
		return nil
	}
	names := make([]string, len(tensors))
	named := 0
	for i, t := range tensors {
		names[i] = t.Name
		if slices.Contains(features, t.Name) {
			named++
		}
	}
	if named > 0 {
		for _, f := range features {
			if !slices.Contains(names, f) {
				return &InvalidError{fmt.Sprintf("invalid profile: %s feature %q is not one of the model's %s tensors (%s): name each %s feature after a tensor, or profile one tensor's columns in order",
					side, f, side, strings.Join(names, ", "), side)}
			}
		}
		return nil
	}
	if len(tensors) > 1 {
		return &InvalidError{fmt.Sprintf("invalid profile: the model has %d %s tensors (%s) and no %s feature is named after one: name each %s feature after the tensor it reads",
			len(tensors), side, strings.Join(names, ", "), side, side)}
	}
	shape := tensors[0].Shape
	if len(shape) == 2 && shape[1] > 0 && int(shape[1]) != len(features) {
		return &InvalidError{fmt.Sprintf("invalid profile: the model's %s %q has %d columns but the profile has %d %s features (%s): give one column of the sample per column of the tensor, in order",
			side, tensors[0].Name, shape[1], len(features), side, strings.Join(features, ", "))}
	}
	return nil
}
