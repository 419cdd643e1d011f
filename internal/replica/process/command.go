package process

import "github.com/ebb-ml/ebb/internal/sibling"

// LeanBinary is the name of the replica binary (cmd/ebb-replica) that
// ReplicaCommand looks for beside ebb.
const LeanBinary = "ebb-replica"

// BuildLeanHint is the command that builds the replica binary next to ebb,
// for messages that tell a user without one how to get it.
const BuildLeanHint = "make build (or CGO_ENABLED=0 go build -tags grpcnotrace -o DIR/ ./cmd/ebb-replica, DIR being ebb's directory)"

// ReplicaCommand returns the command that starts replicas for the ebb
// whose executable is exe: the ebb-replica beside it when there is one
// (lean is true), else exe's own hidden `replica` subcommand, which serves
// the same but keeps all of ebb resident in every replica.
func ReplicaCommand(exe string) (cmd []string, lean bool) {
	if beside, ok := sibling.Beside(exe, LeanBinary); ok {
		return []string{beside}, true
	}
	return []string{exe, "replica"}, false
}
