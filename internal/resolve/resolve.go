// Package resolve turns a deployment spec that names a registry version
// ("diabetes@champion", "diabetes:3") into what its replicas run: the
// version is looked up in the registry, and the spec's model becomes the
// version's content-addressed artifact (its URI, SHA-256 and packaging).
// The resolver fetches nothing: each replica fetches the artifact itself
// through the artifact cache of its host or node (package artifact), which
// verifies it and shares it with every other replica there. That is the
// same in both homes: a process replica of `ebb up` and a replica pod do
// the same fetch, and both report it as the artifact_fetched cold-start
// phase. A spec that already names a path or URI passes through.
package resolve

import (
	"context"
	"fmt"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Resolution is what a deployment's replicas run.
type Resolution struct {
	// Spec is the deployment's spec with Engine set and, for a registry
	// version, Model the artifact's URI.
	Spec serving.Spec
	// Artifact is the registry artifact replicas fetch; nil when the spec
	// names a path or URI itself.
	Artifact *replica.Artifact
	// Version is "model:N" when the spec named a registry version, else "".
	Version string
	// Signature is the registry version's signature, when the spec named
	// one; the gateway answers model metadata from it while no replica is
	// ready.
	Signature *registry.Signature
}

// Registry is the part of the registry the resolver reads and reports to.
type Registry interface {
	Resolve(ctx context.Context, ref registry.Ref) (registry.Version, error)
	RecordServing(ctx context.Context, deployment, model string, version int) error
}

// Resolver resolves specs through a registry.
type Resolver struct {
	reg Registry
}

// New returns a Resolver.
func New(reg Registry) *Resolver { return &Resolver{reg: reg} }

// Resolve returns what spec's replicas run.
func (r *Resolver) Resolve(ctx context.Context, spec serving.Spec) (Resolution, error) {
	ref, ok := serving.ParseModelRef(spec.Model)
	if !ok {
		return Resolution{Spec: spec}, nil
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
	out := spec
	out.Engine = v.Engine
	out.Model = v.ArtifactURI
	return Resolution{
		Spec: out,
		Artifact: &replica.Artifact{
			URI:    v.ArtifactURI,
			SHA256: v.SHA256,
			Dir:    v.Packaging == registry.PackagingTar,
			Entry:  v.Entry,
		},
		Version:   fmt.Sprintf("%s:%d", v.Model, v.Version),
		Signature: &v.Signature,
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
