package serving

import (
	"time"

	"github.com/ebb-ml/ebb/internal/serving/core"
)

// The Kubernetes-free serving types live in package core, for the replica
// binary to import without Kubernetes' packages; these aliases keep them
// in serving for everyone else.

type (
	// Duration is core.Duration.
	Duration = core.Duration
	// ModelRef is core.ModelRef.
	ModelRef = core.ModelRef
	// Batching is core.Batching.
	Batching = core.Batching
	// Python is core.Python.
	Python = core.Python
	// Phase is core.Phase.
	Phase = core.Phase
	// ArtifactFetch is core.ArtifactFetch.
	ArtifactFetch = core.ArtifactFetch
)

// Protocols a Spec may name; "" means ProtocolOIP.
const (
	ProtocolOIP    = core.ProtocolOIP
	ProtocolOpenAI = core.ProtocolOpenAI
)

// Cold-start phase names, in the order they happen (see core).
const (
	PhaseProcessStarted  = core.PhaseProcessStarted
	PhaseArtifactFetched = core.PhaseArtifactFetched
	PhaseModelLoaded     = core.PhaseModelLoaded
	PhaseReady           = core.PhaseReady
)

// D returns d as a Duration.
func D(d time.Duration) Duration { return core.D(d) }

// ParseModelRef parses "model@alias" or "model:N"; see core.ParseModelRef.
func ParseModelRef(s string) (ModelRef, bool) { return core.ParseModelRef(s) }

// OIPVersion returns the OIP v2 version name of a registry version; see
// core.OIPVersion.
func OIPVersion(version string) string { return core.OIPVersion(version) }
