package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/artifact/backend"
	"github.com/ebb-ml/ebb/internal/artifact/fetcher"
	"github.com/ebb-ml/ebb/internal/replicacmd"
)

// newFetchArtifactCmd is `ebb fetch-artifact URI`, hidden: a replica runs
// it to read an s3:// model artifact, which it verifies itself, so that
// the lean replica binary links no S3 client (internal/artifact/fetcher).
// The S3 settings come from the environment the replica passes on
// ($EBB_S3_ENDPOINT, $AWS_ACCESS_KEY_ID, ...). The exit status says
// whether the artifact is missing (3) or the store may answer later (4).
func newFetchArtifactCmd() *cobra.Command {
	return &cobra.Command{
		Use:    replicacmd.FetchArtifactCommand + " URI",
		Short:  "Write the artifact at URI (s3://bucket/key, file:///path) to standard output",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := fetcher.Main(cmd.Context(), backend.Reader{}, args[0], os.Stdout, os.Stderr); code != fetcher.ExitOK {
				os.Exit(code)
			}
			return nil
		},
	}
}
