package home

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/artifact/backend"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/replicacmd"
	"github.com/ebb-ml/ebb/internal/resolve"
	"github.com/ebb-ml/ebb/internal/serving"
)

// RegistryOptions are a home's flags for the model registry.
type RegistryOptions struct {
	Artifacts     string
	CacheDir      string
	CacheMaxBytes int64
	Retire        registry.RetirePolicy
	RetireEvery   time.Duration
}

// AddFlags adds --artifacts, --cache-dir, --cache-max-bytes, the
// --retire-* flags and --keep-versions to f.
func (o *RegistryOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Artifacts, "artifacts", "", "artifact store for pushed models: a directory, file:///dir or s3://bucket/prefix (S3 settings from $EBB_S3_ENDPOINT, $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY); default DATA-DIR/artifacts")
	f.StringVar(&o.CacheDir, "cache-dir", "", "host cache of model artifacts shared by all replicas here; default DATA-DIR/cache")
	f.Int64Var(&o.CacheMaxBytes, "cache-max-bytes", 10<<30, "size budget of the artifact cache; least recently used artifacts no replica uses are evicted")
	f.DurationVar(&o.Retire.WarnAfter, "retire-warn-after", 30*24*time.Hour, "warn about a model version no alias or deployment used for this long")
	f.DurationVar(&o.Retire.RetireAfter, "retire-after", 90*24*time.Hour, "retire (unload) a model version unused for this long")
	f.DurationVar(&o.Retire.GCGrace, "retire-gc-grace", 7*24*time.Hour, "delete a retired version's artifact after this long")
	f.DurationVar(&o.RetireEvery, "retire-every", 10*time.Minute, "how often versions are checked for retirement")
	f.IntVar(&o.Retire.KeepVersions, "keep-versions", 3, "never retire the last `N` versions each deployment served, so that ebb rollout undo can go back to them; 0 keeps only the versions in use")
}

// DeploymentLister lists a home's deployments: its SQL store in ebb up,
// the ModelDeployments in a cluster.
type DeploymentLister interface {
	ListDeployments(ctx context.Context) ([]serving.Deployment, error)
}

// RetireUsage is what retirement asks a home: inUse is its control loop's
// InUse; the last versions each of deps served are kept
// (RetirePolicy.KeepVersions).
func RetireUsage(inUse func(model string, version int) bool, deps DeploymentLister) registry.Usage {
	return registry.Usage{InUse: inUse, Deployments: func(ctx context.Context) ([]string, error) {
		ds, err := deps.ListDeployments(ctx)
		if err != nil {
			return nil, err
		}
		names := make([]string, len(ds))
		for i, d := range ds {
			names[i] = d.Name
		}
		return names, nil
	}}
}

// Registry is the registry service with what resolves its versions for
// replicas on this host.
type Registry struct {
	Service  *registry.Service
	Resolver *resolve.Resolver
	// CacheDir is the host's artifact cache, which replicas fetch into,
	// within CacheMaxBytes.
	CacheDir      string
	CacheMaxBytes int64
}

// NewRegistry opens the artifact store and host cache and returns the
// registry over st. onAlias is told when an alias moves.
func NewRegistry(o RegistryOptions, dataDir string, st registry.Store, reg prometheus.Registerer, log *slog.Logger, onAlias func(model string)) (*Registry, error) {
	if err := o.Retire.Validate(); err != nil {
		return nil, fmt.Errorf("retirement flags: %w", err)
	}
	location := o.Artifacts
	if location == "" {
		location = filepath.Join(dataDir, "artifacts")
	}
	location, err := dirLocation(location)
	if err != nil {
		return nil, fmt.Errorf("--artifacts: %w", err)
	}
	arts, err := backend.Open(location, backend.Options{})
	if err != nil {
		return nil, fmt.Errorf("--artifacts: %w", err)
	}
	cacheDir := o.CacheDir
	if cacheDir == "" {
		cacheDir = filepath.Join(dataDir, "cache")
	}
	// Replicas fetch into the cache themselves; opening it here creates
	// the directory and clears what an earlier run left half-downloaded.
	cache, err := artifact.NewCache(cacheDir, backend.Reader{}, artifact.CacheOptions{MaxBytes: o.CacheMaxBytes})
	if err != nil {
		return nil, err
	}
	svc := registry.NewService(st, Artifacts{arts}, registry.Options{
		Validator:     ValidateModel,
		Metrics:       registry.NewMetrics(reg),
		Log:           log,
		OnAliasChange: onAlias,
	})
	return &Registry{Service: svc, Resolver: resolve.New(svc), CacheDir: cache.Dir(), CacheMaxBytes: o.CacheMaxBytes}, nil
}

// ValidateModel is the registry's push-time check: it loads the model with
// the engines replicas run in their own process (trees, onnx, echo), as a
// replica would, and returns its signature. An onnx model is loaded in this
// process only when this build has cgo (ONNX Runtime is a C library); a
// build without (ebb as make build builds it) asks ebb-onnx, the replica
// binary with cgo, in a process of its own (replicacmd.Describe). Engines
// that run outside a replica's process (python, http) are not checked here:
// their models are checked when a replica first loads them.
func ValidateModel(ctx context.Context, engineName, path string) (registry.Signature, error) {
	switch engineName {
	case "trees", "echo":
	case "onnx":
		if !replicacmd.ServesONNX() {
			argv, err := replicacmd.ONNXCommand()
			if err != nil {
				return registry.Signature{}, err
			}
			s, err := replicacmd.Describe(ctx, argv, engineName, path)
			return registry.Signature{Inputs: s.Inputs, Outputs: s.Outputs}, err
		}
	default:
		return registry.Signature{}, nil
	}
	m, err := replicacmd.LoadModel(engineName, path, "")
	if err != nil {
		if inner := errors.Unwrap(err); inner != nil {
			err = inner // drop LoadModel's "engine NAME: ", which the registry adds
		}
		return registry.Signature{}, err
	}
	if c, ok := m.(io.Closer); ok {
		defer c.Close()
	}
	md := m.Metadata()
	return registry.Signature{Inputs: md.Inputs, Outputs: md.Outputs}, nil
}

// Artifacts adapts an artifact.Store to the registry's ArtifactStore and
// ArtifactDeleter: every read is verified against the expected SHA-256.
type Artifacts struct{ Store artifact.Store }

var (
	_ registry.ArtifactStore   = Artifacts{}
	_ registry.ArtifactDeleter = Artifacts{}
)

func (a Artifacts) Put(ctx context.Context, r io.Reader) (string, string, int64, error) {
	ref, err := a.Store.Put(ctx, r)
	return ref.URI, ref.SHA256, ref.Size, err
}

func (a Artifacts) Open(ctx context.Context, uri, sha256 string) (io.ReadCloser, error) {
	return artifact.OpenVerified(ctx, a.Store, uri, sha256)
}

func (a Artifacts) Delete(ctx context.Context, uri string) error { return a.Store.Delete(ctx, uri) }
