package core

import "time"

// Batching is a dynamic batching policy with Triton's semantics: a batch is
// sent as soon as it holds MaxBatchSize rows or one of PreferredBatchSizes,
// otherwise when its oldest request has waited MaxQueueDelay.
type Batching struct {
	// +optional
	MaxBatchSize int `json:"maxBatchSize"`
	// +optional
	PreferredBatchSizes []int `json:"preferredBatchSizes,omitempty"`
	// +optional
	MaxQueueDelay Duration `json:"maxQueueDelay"`
}

// Python says which user class serves the model: it has load(path) and
// predict(inputs).
type Python struct {
	// Class is "FILE.py:ClassName" (FILE relative to the model's
	// directory, or absolute) or "module:ClassName".
	// +optional
	Class string `json:"class"`
	// Interpreter is the Python to run; default /usr/bin/python3.
	// +optional
	Interpreter string `json:"interpreter,omitempty"`
	// Workers is how many Python worker processes each replica runs the
	// class in: a worker runs one predict at a time (Python's GIL), so
	// more workers serve more requests at once, each with its own copy of
	// the model in memory. Default 1.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=64
	Workers int32 `json:"workers,omitempty"`
}

// Protocols a deployment of engine http may name; "" means ProtocolOIP.
const (
	ProtocolOIP    = "oip"
	ProtocolOpenAI = "openai"
)

// SecretHeader carries a replica's secret to it (the REST header, and the
// gRPC metadata key of that name), and SecretEnv hands it to a replica
// process at start, out of sight of other users (unlike its command line).
// See replica.Handle.Secret.
const (
	SecretHeader = "Ebb-Replica-Secret"
	SecretEnv    = "EBB_REPLICA_SECRET"
)

// Cold-start phase names, in the order they happen.
const (
	PhaseProcessStarted = "process_started" // scheduled until the process runs
	// PhaseArtifactFetched is the phase in which a replica fetched its
	// model artifact through the artifact cache of its host (or node); it
	// comes after the process (or container) started and before the model
	// loaded. Its Phase carries Bytes and CacheHit.
	PhaseArtifactFetched = "artifact_fetched"
	PhaseModelLoaded     = "model_loaded" // process running until the model is in memory
	PhaseReady           = "ready"        // model loaded until the replica receives traffic
)

// Phase is one step of a cold start: it ended at At and took Duration.
//
// +kubebuilder:object:generate=false
type Phase struct {
	Name string `json:"name"`
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	At       time.Time `json:"at"`
	Duration Duration  `json:"duration"`
	// Bytes and CacheHit describe PhaseArtifactFetched: the artifact's
	// size, and whether the host's (node's) cache already held it.
	// +optional
	Bytes int64 `json:"bytes,omitempty"`
	// +optional
	CacheHit *bool `json:"cacheHit,omitempty"`
}

// ArtifactFetch is how a replica obtained its model artifact.
//
// +kubebuilder:object:generate=false
type ArtifactFetch struct {
	// FetchedAt is when the artifact was on local disk, verified.
	FetchedAt time.Time `json:"fetchedAt"`
	// Took is how long the fetch itself took (the replica's own start-up
	// before it is not counted).
	Took Duration `json:"took"`
	// Bytes is the artifact's size.
	Bytes int64 `json:"bytes"`
	// CacheHit reports that the host's cache already held the artifact, so
	// nothing was downloaded.
	CacheHit bool `json:"cacheHit"`
}

// Phase returns the PhaseArtifactFetched phase of the fetch: it ends at
// FetchedAt and lasts what the fetch took, as an image pull's phase lasts
// what the pull took.
func (a ArtifactFetch) Phase() Phase {
	hit := a.CacheHit
	return Phase{Name: PhaseArtifactFetched, At: a.FetchedAt, Duration: a.Took, Bytes: a.Bytes, CacheHit: &hit}
}
