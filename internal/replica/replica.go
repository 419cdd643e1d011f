// Package replica defines the contract between the control loop and the
// places replicas run: a Backend starts a replica for a Spec and returns a
// Handle that can be stored and later recovered after a restart of ebb.
//
// Implementations are sibling packages (replica/process, later replica/kube)
// and all pass the conformance suite in replica/replicatest.
package replica

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/serving/core"
)

// ErrNotFound is returned by Recover when the replica a handle names no
// longer runs.
var ErrNotFound = errors.New("replica not found")

// Spec says what one replica serves.
type Spec struct {
	// ID identifies the replica; unique across all deployments.
	ID string `json:"id"`
	// Deployment is the deployment the replica belongs to, and the model
	// name it serves.
	Deployment string `json:"deployment"`
	// Track, when set, is the tag of the deployment's traffic target the
	// replica serves (serving.TrafficTarget); empty for the primary.
	Track string `json:"track,omitempty"`
	// Model is the artifact path or URI the engine loads.
	Model string `json:"model"`
	// Engine names the runtime ("trees").
	Engine string `json:"engine"`
	// The rest mirror serving.Spec for the engines that use them.
	Batching *serving.Batching `json:"batching,omitempty"`
	Python   *serving.Python   `json:"python,omitempty"`
	Command  []string          `json:"command,omitempty"`
	URL      string            `json:"url,omitempty"`
	Env      map[string]string `json:"env,omitempty"`

	// UpstreamModel and Protocol: see serving.Spec (engine http).
	UpstreamModel string `json:"upstreamModel,omitempty"`
	Protocol      string `json:"protocol,omitempty"`
	// Artifact, when set, is a registry artifact the replica fetches
	// itself through its host's (or node's) artifact cache, verified
	// against its SHA-256; Model is then the artifact's URI.
	Artifact *Artifact `json:"artifact,omitempty"`
	// Version is the registry version the replica serves ("diabetes:3");
	// empty for a model given by path. The replica reports it in its model
	// metadata and serves /v2/models/{m}/versions/{v} for it only.
	Version string `json:"version,omitempty"`

	// Pool, when set, makes the replica one of a multi-model pool's
	// (Deployment names the pool): it starts with no model, Model is
	// empty, and the control loop loads models into it on demand.
	Pool *PoolReplica `json:"pool,omitempty"`
}

// PoolReplica is what a replica of a multi-model pool needs beyond a
// Spec: `ebb replica --pool --memory-budget`.
type PoolReplica struct {
	// MemoryBudget is the most bytes its models may hold together.
	MemoryBudget int64 `json:"memoryBudget"`
	// Slot is the replica's place in the pool ("0", "1", ...), its name in
	// placement: a replica started again in the slot of one that died
	// hosts the same models.
	Slot string `json:"slot"`
}

// Key is the name the control loop knows the replica's track by: the
// deployment's name, or name.track (serving.Track.Key); for a pool's
// replica, serving.PoolKey of the pool's name.
func (s Spec) Key() string {
	if s.Pool != nil {
		return serving.PoolKey(s.Deployment)
	}
	if s.Track == "" {
		return s.Deployment
	}
	return s.Deployment + serving.TrackSep + s.Track
}

// Artifact is a content-addressed model artifact (see package artifact).
type Artifact struct {
	// URI is where it is stored: s3://bucket/key or file:///path.
	URI string `json:"uri"`
	// SHA256 is the digest its bytes must match.
	SHA256 string `json:"sha256"`
	// Dir reports a tar archive that is unpacked into a directory.
	Dir bool `json:"dir,omitempty"`
	// Entry is, for Dir, the path inside the directory the engine loads;
	// empty: the directory itself.
	Entry string `json:"entry,omitempty"`
}

// SpecFor returns the replica spec that serves deployment d's spec; ID is
// left for the caller.
func SpecFor(deployment string, s serving.Spec) Spec {
	return Spec{
		Deployment: deployment,
		Model:      s.Model,
		Engine:     s.Engine,
		Batching:   s.Batching,
		Python:     s.Python,
		Command:    s.Command,
		URL:        s.URL,
		Env:        s.Env,

		UpstreamModel: s.UpstreamModel,
		Protocol:      s.Protocol,
	}
}

// Handle identifies a started replica. It is plain data: the control loop
// stores it and hands it back to Recover after a restart.
type Handle struct {
	Spec    Spec   `json:"spec"`
	Backend string `json:"backend"`
	// Endpoint is the base URL of the replica's OIP v2 server.
	Endpoint string `json:"endpoint"`
	// Socket, when set, is a Unix stream socket on which the replica
	// serves OIP v2 REST too (not gRPC), for a local gateway: cheaper than
	// loopback TCP per request. It is an address for net.Dial("unix"): a
	// Linux abstract name ("@ebb-replica-…"), valid as long as the replica
	// lives, or a path. Requests on it carry Secret as on Endpoint. The
	// process backend sets it; Endpoint still serves everything (health
	// checks, metadata, gRPC).
	Socket string `json:"socket,omitempty"`
	// ScheduledAt is when Start was called; StartedAt when the replica's
	// process (or pod) was running.
	ScheduledAt time.Time `json:"scheduledAt"`
	StartedAt   time.Time `json:"startedAt"`
	// State is backend-specific data needed to recover the replica (a PID,
	// a pod name).
	State json.RawMessage `json:"state,omitempty"`
	// Secret, when set, is the credential the replica demands of every
	// request but its health checks and /ebb/v1/replica, in the header
	// SecretHeader (REST) or the metadata key of that name (gRPC). The
	// process backend sets it, since any local user can reach a loopback
	// port; it is stored with the handle (ebb up's store, mode 0600) so
	// that a replica recovered after a restart can still be reached.
	Secret string `json:"secret,omitempty"`
}

// SecretHeader carries a Handle's Secret to the replica, and SecretEnv
// hands it to a replica process at start, out of sight of other users
// (unlike its command line).
const (
	SecretHeader = core.SecretHeader
	SecretEnv    = core.SecretEnv
)

// Startup reports when a replica reached each step of its start.
type Startup struct {
	// ModelLoadedAt is when the engine finished loading the model.
	ModelLoadedAt time.Time
	// ReadyAt is when the replica began answering ready.
	ReadyAt time.Time
	// Artifact, when the replica fetched a registry artifact, says when,
	// how many bytes, and whether its cache already held it.
	Artifact *serving.ArtifactFetch
	// Phases, when a backend sees more of the start than the two times
	// above (the kube backend: scheduled, image pulled, container started),
	// lists every phase in order, ending with serving.PhaseModelLoaded and
	// serving.PhaseReady; nil otherwise.
	Phases []serving.Phase
}

// Exit describes how a replica ended.
type Exit struct {
	// Code is the exit status, -1 when killed by a signal or unknown.
	Code int
	// Err explains an abnormal end ("signal: killed"); nil for a clean exit.
	Err error
}

// Backend starts, watches and stops replicas. All methods are safe for
// concurrent use.
type Backend interface {
	// Start launches a replica and returns as soon as it runs; the handle's
	// Endpoint is set but may not answer yet.
	Start(ctx context.Context, spec Spec) (Handle, error)
	// Ready blocks until the replica serves its model, the replica fails
	// (the error says why, e.g. the engine's load error), or ctx ends.
	Ready(ctx context.Context, h Handle) (Startup, error)
	// Wait blocks until the replica exits or ctx ends.
	Wait(ctx context.Context, h Handle) (Exit, error)
	// Stop asks the replica to finish in-flight work and exit, and kills it
	// when ctx ends first. Stopping a replica that already exited is not an
	// error.
	Stop(ctx context.Context, h Handle) error
	// Recover reattaches to a replica started by an earlier Backend (perhaps
	// in an earlier ebb process). It returns ErrNotFound when the replica no
	// longer runs; after a nil error, Wait and Stop work on h.
	Recover(ctx context.Context, h Handle) error
}

// Logger is implemented by backends that can read a replica's output
// (process: its log file; kube: the pod's container log). The stream holds
// the output as the replica wrote it; the caller closes it.
type Logger interface {
	// Logs returns the replica's output from opts.TailLines lines before
	// the end. With opts.Follow it stays open for new output and ends
	// (io.EOF) once the replica has exited and all its output was read,
	// or when ctx ends. A replica this backend cannot find is ErrNotFound.
	Logs(ctx context.Context, h Handle, opts LogOptions) (io.ReadCloser, error)
}

// LogOptions select what Logger.Logs returns.
type LogOptions struct {
	// Follow keeps the stream open for new output until the replica ends.
	Follow bool
	// TailLines, when above 0, starts that many lines before the end;
	// 0 or less returns the whole log.
	TailLines int64
}

// Args are the `ebb replica` flags that serve spec, before the socket
// flags each backend adds (--listen-fd/--notify-fd for a local process,
// --addr for a pod). A command for engine http comes last, after "--".
func Args(spec Spec, socket ...string) []string {
	args := []string{
		"--deployment", spec.Deployment,
		"--id", spec.ID,
	}
	if p := spec.Pool; p != nil {
		args = append(args, "--pool", "--memory-budget", strconv.FormatInt(p.MemoryBudget, 10))
	} else {
		args = append(args, "--model", spec.Model)
	}
	args = append(args, "--engine", spec.Engine)
	if spec.Version != "" {
		args = append(args, "--model-version", spec.Version)
	}
	if a := spec.Artifact; a != nil {
		args = append(args, "--model-sha256", a.SHA256)
		if a.Dir {
			args = append(args, "--model-unpack")
		}
		if a.Entry != "" {
			args = append(args, "--model-entry", a.Entry)
		}
	}
	args = append(args, socket...)
	if b := spec.Batching; b != nil {
		args = append(args, "--batch-max-size", strconv.Itoa(b.MaxBatchSize),
			"--batch-max-queue-delay", b.MaxQueueDelay.String())
		if len(b.PreferredBatchSizes) > 0 {
			sizes := make([]string, len(b.PreferredBatchSizes))
			for i, n := range b.PreferredBatchSizes {
				sizes[i] = strconv.Itoa(n)
			}
			args = append(args, "--batch-preferred-sizes", strings.Join(sizes, ","))
		}
	}
	if p := spec.Python; p != nil {
		args = append(args, "--python-class", p.Class)
		if p.Interpreter != "" {
			args = append(args, "--python-interpreter", p.Interpreter)
		}
		if p.Workers > 0 {
			args = append(args, "--python-workers", strconv.Itoa(int(p.Workers)))
		}
	}
	if spec.URL != "" {
		args = append(args, "--upstream", spec.URL)
	}
	if spec.UpstreamModel != "" {
		args = append(args, "--upstream-model", spec.UpstreamModel)
	}
	if spec.Protocol != "" {
		args = append(args, "--protocol", spec.Protocol)
	}
	if len(spec.Command) > 0 {
		args = append(args, "--")
		args = append(args, spec.Command...)
	}
	return args
}
