package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/apiclient"
)

func newDeployCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "deploy -f FILE",
		Short: "Create or replace deployments from a YAML or JSON file",
		Long: `Create a deployment, or replace the spec of the deployment with the same
name, from a YAML or JSON file ("-" reads standard input). The file holds
one deployment in ebb's form:

  name: diabetes
  spec:
    model: examples/diabetes/model.json
    engine: trees
    scaling:
      minReplicas: 0
      maxReplicas: 4
      scaleToZeroAfter: 60s

or a ModelDeployment manifest, as kubectl applies it (deploy/examples):

  apiVersion: serving.ebb.dev/v1alpha1
  kind: ModelDeployment
  metadata:
    name: diabetes
  spec:
    model: diabetes@champion

Either way it goes through the admin API, against ebb up or a cluster
alike, and the spec is the same. Several documents separated by "---"
lines deploy one after the other. Other kinds are refused; of a manifest's
metadata only the name is kept (namespace, labels and annotations are
reported, not kept: apply with kubectl to keep them).

Fields left out take their defaults. The output of
` + "`ebb get deployments NAME -o yaml`" + ` can be deployed again as is.`,
		Example: `  ebb deploy -f diabetes.yaml
  ebb deploy -f deploy/examples/modeldeployment.yaml
  cat diabetes.json | ebb deploy -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("no file given: pass the deployment file with -f FILE (or -f - for standard input)")
			}
			data, err := readInput(cmd, file)
			if err != nil {
				return err
			}
			docs, err := deploymentDocs(data)
			if err != nil {
				return fmt.Errorf("%s: %w", displayName(file), err)
			}
			return applyDocs(cmd, docs)
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", `deployment file, YAML or JSON ("-" for standard input)`)
	addServerFlag(cmd)
	return cmd
}

// applyDocs applies each deployment in turn, as kubectl apply does: one
// the server refuses does not stop the others, and the error names every
// refused one. A server that cannot be reached stops at once.
func applyDocs(cmd *cobra.Command, docs []deployDoc) error {
	c := newAPIClient(cmd)
	var errs []error
	for _, d := range docs {
		for _, n := range d.notes {
			fmt.Fprintf(cmd.ErrOrStderr(), "Warning: deployment/%s: %s\n", d.name, n)
		}
		_, created, err := c.ApplyDeploymentJSON(cmd.Context(), d.name, d.body)
		if err != nil {
			if _, refused := errors.AsType[*apiclient.Error](err); !refused || len(docs) == 1 {
				return errors.Join(append(errs, err)...)
			}
			errs = append(errs, fmt.Errorf("deployment/%s: %w", d.name, err))
			continue
		}
		verb := "configured"
		if created {
			verb = "created"
		}
		fmt.Fprintf(cmd.OutOrStdout(), "deployment/%s %s\n", d.name, verb)
	}
	return errors.Join(errs...)
}

// readInput reads the named file, or standard input for "-".
func readInput(cmd *cobra.Command, file string) ([]byte, error) {
	if file == "-" {
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return b, nil
	}
	return os.ReadFile(file) // its error names the file
}

func displayName(file string) string {
	if file == "-" {
		return "standard input"
	}
	return file
}
