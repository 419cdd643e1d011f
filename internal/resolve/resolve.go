// Package resolve turns a deployment spec that names a registry version
// ("diabetes@champion", "diabetes:3") into the spec its replicas run: the
// version is looked up in the registry, its artifact is fetched into the
// host's cache (verified against its sha256) and the spec's model becomes
// the local path. A spec that already names a path passes through.
//
// The cache lease of a resolved artifact is held until the caller releases
// the Resolution, so the artifact a running replica uses is never evicted.
package resolve

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Resolution is what a deployment's replicas run.
type Resolution struct {
	// Spec is the deployment's spec with Model a local path and Engine set.
	Spec serving.Spec
	// Version is "model:N" when the spec named a registry version, else "".
	Version string
	// Release frees the artifact's cache lease; it is never nil and may be
	// called more than once.
	Release func()
}

// Registry is the part of the registry the resolver reads and reports to.
type Registry interface {
	Resolve(ctx context.Context, ref registry.Ref) (registry.Version, error)
	RecordServing(ctx context.Context, deployment, model string, version int) error
}

// Cache holds artifacts on this host.
type Cache interface {
	Fetch(ctx context.Context, uri, sha256 string) (*artifact.Lease, error)
	FetchDir(ctx context.Context, uri, sha256 string) (*artifact.Lease, error)
}

// Resolver resolves specs through a registry and an artifact cache.
type Resolver struct {
	reg   Registry
	cache Cache
}

// New returns a Resolver.
func New(reg Registry, cache Cache) *Resolver { return &Resolver{reg: reg, cache: cache} }

func noop() {}

// Resolve returns what spec's replicas run.
func (r *Resolver) Resolve(ctx context.Context, spec serving.Spec) (Resolution, error) {
	ref, ok := serving.ParseModelRef(spec.Model)
	if !ok {
		return Resolution{Spec: spec, Release: noop}, nil
	}
	v, err := r.reg.Resolve(ctx, ref)
	if err != nil {
		return Resolution{}, fmt.Errorf("model %s: %w", ref, err)
	}
	if spec.Engine != "" && spec.Engine != v.Engine {
		return Resolution{}, fmt.Errorf("model %s is engine %q but the deployment asks for engine %q: drop spec.engine or make it match", ref, v.Engine, spec.Engine)
	}
	if v.State == registry.StatePurged {
		return Resolution{}, fmt.Errorf("model %s (version %d) was retired and its artifact deleted: push it again or point the deployment at another version", ref, v.Version)
	}
	var lease *artifact.Lease
	if v.Packaging == registry.PackagingTar {
		lease, err = r.cache.FetchDir(ctx, v.ArtifactURI, v.SHA256)
	} else {
		lease, err = r.cache.Fetch(ctx, v.ArtifactURI, v.SHA256)
	}
	if err != nil {
		return Resolution{}, fmt.Errorf("model %s (version %d): fetch artifact: %w", ref, v.Version, err)
	}
	out := spec
	out.Engine = v.Engine
	out.Model = lease.Path
	if v.Entry != "" {
		out.Model = filepath.Join(lease.Path, v.Entry)
	}
	return Resolution{
		Spec:    out,
		Version: fmt.Sprintf("%s:%d", v.Model, v.Version),
		Release: lease.Release,
	}, nil
}

// Serving records that version ("model:N") serves deployment.
func (r *Resolver) Serving(ctx context.Context, deployment, version string) error {
	ref, ok := serving.ParseModelRef(version)
	if !ok || ref.Version == 0 {
		return nil
	}
	return r.reg.RecordServing(ctx, deployment, ref.Model, ref.Version)
}
