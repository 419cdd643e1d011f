// Package registry is ebb's model catalog: models, their immutable numbered
// versions (artifact, engine, signature, lineage, tags), aliases such as
// "champion" that point at one version and move atomically with every move
// recorded, which version served each deployment when, and the retirement
// of versions nobody uses.
//
// The records live in a Store (store/sqlite, store/postgres), which every
// implementation proves with the registrytest conformance suite. The
// business rules (push with validation, alias moves, resolution of
// references, retirement) are in Service.
package registry

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Model is a named series of versions.
type Model struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	// UpdatedAt is when the model was created or last got a version.
	UpdatedAt time.Time `json:"updatedAt"`
	// LatestVersion is the number of the newest version; 0 when none.
	LatestVersion int `json:"latestVersion"`
}

// Signature describes a model's input and output tensors, as OIP v2
// metadata does; -1 in a shape is a dynamic dimension.
type Signature struct {
	Inputs  []oip.TensorMetadata `json:"inputs,omitempty"`
	Outputs []oip.TensorMetadata `json:"outputs,omitempty"`
}

// Lineage links a version to what produced it: training data, parameters,
// hold-out metrics and code.
type Lineage struct {
	DataURI    string             `json:"dataURI,omitempty"`
	DataSHA256 string             `json:"dataSHA256,omitempty"`
	Parameters map[string]string  `json:"parameters,omitempty"`
	Metrics    map[string]float64 `json:"metrics,omitempty"`
	CodeCommit string             `json:"codeCommit,omitempty"`
	// Source says where the version came from, such as "mlflow run <id>".
	Source string `json:"source,omitempty"`
}

// State is where a version is in its life: active, then warned and retired
// when nobody uses it, and purged once its artifact is deleted.
type State string

// Version states.
const (
	// StateActive is a version that can be served.
	StateActive State = "active"
	// StateWarned is a version unused for the policy's WarnAfter; it is
	// still served and turns active again when used or referenced.
	StateWarned State = "warned"
	// StateRetired is a version unused for RetireAfter: unloaded, its
	// artifact kept for the policy's GCGrace. Using it makes it active.
	StateRetired State = "retired"
	// StatePurged is a retired version whose artifact was deleted; it can
	// no longer be served and its record stays for lineage.
	StatePurged State = "purged"
)

// Packaging values of Version.Packaging.
const (
	// PackagingFile means the artifact is the model file itself.
	PackagingFile = ""
	// PackagingTar means the artifact is a tar archive of a directory
	// (uncompressed; regular files and directories only). The engine loads
	// the extracted directory, or Entry inside it when Entry is set.
	PackagingTar = "tar"
)

// Version is one immutable version of a model. Only State,
// StateChangedAt, LastUsedAt and Tags change after it is created.
type Version struct {
	Model string `json:"model"`
	// Version numbers are 1, 2, 3... per model, assigned by the store.
	Version     int    `json:"version"`
	ArtifactURI string `json:"artifactURI"`
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	// Packaging is PackagingFile or PackagingTar.
	Packaging string `json:"packaging,omitempty"`
	// Entry is, for a tar artifact, the path inside the directory of the
	// file the engine loads; empty means the directory itself.
	Entry string `json:"entry,omitempty"`
	// Engine is the runtime that loads the artifact: trees, onnx, python...
	Engine    string            `json:"engine"`
	Signature Signature         `json:"signature"`
	Lineage   Lineage           `json:"lineage"`
	Tags      map[string]string `json:"tags,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`
	CreatedBy string            `json:"createdBy,omitempty"`
	State     State             `json:"state"`
	// StateChangedAt is when State last changed (CreatedAt at first).
	StateChangedAt time.Time `json:"stateChangedAt"`
	// LastUsedAt is when a deployment last served the version; zero when
	// never.
	LastUsedAt time.Time `json:"lastUsedAt,omitzero"`
}

// Ref returns the reference "model:version".
func (v Version) Ref() Ref { return Ref{Model: v.Model, Version: v.Version} }

// Alias is a name, such as "champion", that points at one version of a
// model.
type Alias struct {
	Model     string    `json:"model"`
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	UpdatedAt time.Time `json:"updatedAt"`
	UpdatedBy string    `json:"updatedBy,omitempty"`
}

// AliasMove records one change of an alias: From 0 is a creation, To 0 a
// deletion.
type AliasMove struct {
	Model string    `json:"model"`
	Alias string    `json:"alias"`
	From  int       `json:"from"`
	To    int       `json:"to"`
	By    string    `json:"by,omitempty"`
	At    time.Time `json:"at"`
}

// ServingRecord says that from At on, Deployment served Model's Version.
type ServingRecord struct {
	Deployment string    `json:"deployment"`
	Model      string    `json:"model"`
	Version    int       `json:"version"`
	At         time.Time `json:"at"`
}

// ListOptions pages through models sorted by name.
type ListOptions struct {
	// Prefix keeps only names that start with it.
	Prefix string
	// After keeps only names sorted after it: pass the last name of the
	// previous page.
	After string
	// Limit is the most models returned; 0 or less means no limit.
	Limit int
}

// VersionListOptions pages through one model's versions, oldest first.
type VersionListOptions struct {
	// After keeps only versions numbered above it.
	After int
	// Limit is the most versions returned; 0 or less means no limit.
	Limit int
}

// AnyVersion, given as SetAlias's or DeleteAlias's expectFrom, skips the
// compare-and-swap check.
const AnyVersion = -1

// Store keeps the registry's records. All methods are safe for concurrent
// use, also across processes sharing one database. Errors wrap
// store.ErrNotFound (a named model, version or alias does not exist),
// store.ErrExists (a name is taken) or store.ErrConflict (a compare-and-swap
// found another value). Times the store sets come from its own clock, UTC,
// to the microsecond; times passed in are stored as given (UTC, truncated to
// the microsecond).
type Store interface {
	// CreateModel stores a new model with LatestVersion 0 and CreatedAt and
	// UpdatedAt set to now, ignoring those fields of m; ErrExists when the
	// name is taken.
	CreateModel(ctx context.Context, m Model) (Model, error)
	// GetModel returns the named model; ErrNotFound when missing.
	GetModel(ctx context.Context, name string) (Model, error)
	// ListModels returns models sorted by name, paged by opts.
	ListModels(ctx context.Context, opts ListOptions) ([]Model, error)

	// CreateVersion stores v as the next version of v.Model: its number is
	// the model's LatestVersion+1, assigned atomically so concurrent
	// creations get distinct numbers with no gaps. It sets CreatedAt and
	// StateChangedAt to now, State to StateActive and LastUsedAt to zero,
	// ignoring those fields of v, and updates the model's LatestVersion and
	// UpdatedAt. ErrNotFound when the model does not exist.
	CreateVersion(ctx context.Context, v Version) (Version, error)
	// GetVersion returns one version; ErrNotFound when the model or the
	// version does not exist.
	GetVersion(ctx context.Context, model string, version int) (Version, error)
	// ResolveRefs returns the version each ref names, keyed by the ref: a
	// numbered version, or the one an alias points at now. A ref that
	// names nothing (no such model, version or alias) is not in the map;
	// that is no error. It reads in a few queries however many refs it is
	// given: the loops that ask (drift's syncer every few seconds) resolve
	// every deployment's models at once.
	ResolveRefs(ctx context.Context, refs []Ref) (map[Ref]Version, error)
	// ListVersions returns a model's versions in increasing order, paged by
	// opts; ErrNotFound when the model does not exist.
	ListVersions(ctx context.Context, model string, opts VersionListOptions) ([]Version, error)
	// SetVersionState changes a version's State from `from` to `to` and
	// sets StateChangedAt to at. ErrConflict when the state is not `from`
	// (nothing changes); ErrNotFound when the version does not exist.
	SetVersionState(ctx context.Context, model string, version int, from, to State, at time.Time) (Version, error)
	// TouchVersion sets LastUsedAt to at unless it is already later;
	// ErrNotFound when the version does not exist.
	TouchVersion(ctx context.Context, model string, version int, at time.Time) error
	// UpdateVersionTags sets the tags in set and then removes the keys in
	// del, atomically; ErrNotFound when the version does not exist.
	UpdateVersionTags(ctx context.Context, model string, version int, set map[string]string, del []string) (Version, error)

	// SetAlias points alias at version `to` of model, creating the alias if
	// needed, and records the move (by, now) in the alias's history. It is
	// a compare-and-swap on the alias's current version: expectFrom is the
	// version it must point at now, 0 when it must not exist, or AnyVersion
	// to skip the check; a mismatch is ErrConflict and changes nothing, so
	// of two concurrent moves from the same state exactly one succeeds.
	// Moving an alias to the version it already points at writes nothing
	// and returns a move with From == To. ErrNotFound when the model or
	// version `to` does not exist.
	SetAlias(ctx context.Context, model, alias string, to, expectFrom int, by string) (AliasMove, error)
	// GetAlias returns one alias; ErrNotFound when missing.
	GetAlias(ctx context.Context, model, alias string) (Alias, error)
	// ListAliases returns a model's aliases sorted by name (empty, not an
	// error, when the model has none or does not exist).
	ListAliases(ctx context.Context, model string) ([]Alias, error)
	// DeleteAlias deletes an alias and records a move with To 0.
	// expectFrom works as in SetAlias (0 is not allowed); ErrNotFound when
	// the alias does not exist.
	DeleteAlias(ctx context.Context, model, alias string, expectFrom int, by string) (AliasMove, error)
	// AliasHistory returns every recorded move of an alias, oldest first
	// (also after the alias was deleted); empty when none.
	AliasHistory(ctx context.Context, model, alias string) ([]AliasMove, error)

	// RecordServing records that deployment serves model's version from at
	// on. When the deployment's latest record already names the same model
	// and version nothing is written, so callers may repeat it freely.
	RecordServing(ctx context.Context, deployment, model string, version int, at time.Time) error
	// ServingHistory returns a deployment's serving records, oldest first;
	// empty when none.
	ServingHistory(ctx context.Context, deployment string) ([]ServingRecord, error)
	// LastServedAll returns, for every deployment with records, the last
	// n distinct versions that served it, newest first, each by its latest
	// record (fewer when it served fewer), all in one read: the loops that
	// ask (drift's syncer every few seconds, retirement) ask for thousands
	// of deployments at once.
	LastServedAll(ctx context.Context, n int) (map[string][]ServingRecord, error)
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidateName reports whether name is a valid model or alias name: a DNS
// label of at most 63 lowercase letters, digits and '-', like deployment
// names. what ("model name", "alias") begins the error.
func ValidateName(what, name string) error {
	if name == "" {
		return &InvalidError{what + " is required"}
	}
	if len(name) > 63 || !nameRE.MatchString(name) {
		return &InvalidError{fmt.Sprintf("%s %q must be at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit", what, name)}
	}
	return nil
}

// Ref names a version of a registered model: "diabetes:3" or
// "diabetes@champion". It is the domain type serving.ModelRef.
type Ref = serving.ModelRef

// ParseRef parses "model@alias" or "model:N"; see serving.ParseModelRef.
func ParseRef(s string) (Ref, bool) { return serving.ParseModelRef(s) }

// InvalidError is a request the registry refuses because of what the
// caller sent: a bad name, an artifact the engine cannot load. Its message
// says what was wrong and how to fix it.
type InvalidError struct {
	Message string
}

func (e *InvalidError) Error() string { return e.Message }
