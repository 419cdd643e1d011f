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
	"strconv"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// ErrNotFound is returned by Recover when the replica a handle names no
// longer runs.
var ErrNotFound = errors.New("replica not found")

// Spec says what one replica serves.
type Spec struct {
	// ID identifies the replica; unique across all deployments.
	ID string `json:"id"`
	// Deployment is the deployment the replica belongs to.
	Deployment string `json:"deployment"`
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
	}
}

// Handle identifies a started replica. It is plain data: the control loop
// stores it and hands it back to Recover after a restart.
type Handle struct {
	Spec    Spec   `json:"spec"`
	Backend string `json:"backend"`
	// Endpoint is the base URL of the replica's OIP v2 server.
	Endpoint string `json:"endpoint"`
	// ScheduledAt is when Start was called; StartedAt when the replica's
	// process (or pod) was running.
	ScheduledAt time.Time `json:"scheduledAt"`
	StartedAt   time.Time `json:"startedAt"`
	// State is backend-specific data needed to recover the replica (a PID,
	// a pod name).
	State json.RawMessage `json:"state,omitempty"`
}

// Startup reports when a replica reached each step of its start.
type Startup struct {
	// ModelLoadedAt is when the engine finished loading the model.
	ModelLoadedAt time.Time
	// ReadyAt is when the replica began answering ready.
	ReadyAt time.Time
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

// Args are the `ebb replica` flags that serve spec, before the socket
// flags each backend adds (--listen-fd/--notify-fd for a local process,
// --addr for a pod). A command for engine http comes last, after "--".
func Args(spec Spec, socket ...string) []string {
	args := []string{
		"--deployment", spec.Deployment,
		"--id", spec.ID,
		"--model", spec.Model,
		"--engine", spec.Engine,
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
	}
	if spec.URL != "" {
		args = append(args, "--upstream", spec.URL)
	}
	if len(spec.Command) > 0 {
		args = append(args, "--")
		args = append(args, spec.Command...)
	}
	return args
}
