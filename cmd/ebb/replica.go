package main

import (
	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/replicacmd"
)

// newReplicaCmd is `ebb replica`, the replica command of cmd/ebb-replica
// kept in ebb: the process backend falls back to it when ebb-replica is
// not installed next to ebb (see replicaCommand in up.go's files).
func newReplicaCmd() *cobra.Command {
	cmd := replicacmd.New("replica", nil)
	cmd.Hidden = true
	return cmd
}

// The variables through which ebb up tells its replicas where the artifact
// cache is and how big it may grow.
const (
	artifactCacheEnv    = replicacmd.ArtifactCacheEnv
	artifactCacheMaxEnv = replicacmd.ArtifactCacheMaxEnv
)
