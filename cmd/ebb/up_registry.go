package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/artifact/backend"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/resolve"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
)

// registryOptions are ebb up's flags for the model registry.
type registryOptions struct {
	artifacts     string
	cacheDir      string
	cacheMaxBytes int64
	retire        registry.RetirePolicy
	retireEvery   time.Duration
}

func addRegistryFlags(f *pflag.FlagSet, o *registryOptions) {
	f.StringVar(&o.artifacts, "artifacts", "", "artifact store for pushed models: a directory, file:///dir or s3://bucket/prefix (S3 settings from $EBB_S3_ENDPOINT, $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY); default DATA-DIR/artifacts")
	f.StringVar(&o.cacheDir, "cache-dir", "", "host cache of model artifacts shared by all replicas here; default DATA-DIR/cache")
	f.Int64Var(&o.cacheMaxBytes, "cache-max-bytes", 10<<30, "size budget of the artifact cache; least recently used artifacts no replica uses are evicted")
	f.DurationVar(&o.retire.WarnAfter, "retire-warn-after", 30*24*time.Hour, "warn about a model version no alias or deployment used for this long")
	f.DurationVar(&o.retire.RetireAfter, "retire-after", 90*24*time.Hour, "retire (unload) a model version unused for this long")
	f.DurationVar(&o.retire.GCGrace, "retire-gc-grace", 7*24*time.Hour, "delete a retired version's artifact after this long")
	f.DurationVar(&o.retireEvery, "retire-every", 10*time.Minute, "how often versions are checked for retirement")
}

// modelRegistry is the registry service with what resolves its versions
// for replicas on this host.
type modelRegistry struct {
	svc      *registry.Service
	resolver *resolve.Resolver
}

// newModelRegistry opens the artifact store and host cache and returns the
// registry over st. onAlias is told when an alias moves.
func newModelRegistry(o registryOptions, dataDir string, st registry.Store, reg prometheus.Registerer, log *slog.Logger, onAlias func(model string)) (*modelRegistry, error) {
	if err := o.retire.Validate(); err != nil {
		return nil, fmt.Errorf("retirement flags: %w", err)
	}
	location := o.artifacts
	if location == "" {
		abs, err := filepath.Abs(filepath.Join(dataDir, "artifacts"))
		if err != nil {
			return nil, err
		}
		location = abs
	}
	arts, err := backend.Open(location, backend.Options{})
	if err != nil {
		return nil, fmt.Errorf("--artifacts: %w", err)
	}
	cacheDir := o.cacheDir
	if cacheDir == "" {
		cacheDir = filepath.Join(dataDir, "cache")
	}
	cache, err := artifact.NewCache(cacheDir, backend.Reader{}, artifact.CacheOptions{
		MaxBytes: o.cacheMaxBytes,
		Metrics:  artifact.NewCacheMetrics(reg),
	})
	if err != nil {
		return nil, err
	}
	svc := registry.NewService(st, registryArtifacts{arts}, registry.Options{
		Validator:     validateModel,
		Metrics:       registry.NewMetrics(reg),
		Log:           log,
		OnAliasChange: onAlias,
	})
	return &modelRegistry{svc: svc, resolver: resolve.New(svc, cache)}, nil
}
