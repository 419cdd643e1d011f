package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

func newDeployCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "deploy -f FILE",
		Short: "Create or replace a deployment from a YAML or JSON file",
		Long: `Create a deployment, or replace the spec of the deployment with the same
name, from a YAML or JSON file ("-" reads standard input). The file holds
one deployment:

  name: diabetes
  spec:
    model: examples/diabetes/model.json
    engine: trees
    scaling:
      minReplicas: 0
      maxReplicas: 4
      scaleToZeroAfter: 60s

Fields left out take their defaults. The output of
` + "`ebb get deployments NAME -o yaml`" + ` can be deployed again as is.`,
		Example: `  ebb deploy -f diabetes.yaml
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
			body, name, err := deploymentJSON(data)
			if err != nil {
				return fmt.Errorf("%s: %w", displayName(file), err)
			}
			_, created, err := newAPIClient(cmd).ApplyDeploymentJSON(cmd.Context(), name, body)
			if err != nil {
				return err
			}
			verb := "configured"
			if created {
				verb = "created"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployment/%s %s\n", name, verb)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", `deployment file, YAML or JSON ("-" for standard input)`)
	addServerFlag(cmd)
	return cmd
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

// deploymentJSON converts a YAML or JSON deployment document to JSON and
// returns it with the deployment's name. Field checks are left to the
// server, which reports every problem at once.
func deploymentJSON(data []byte) (body []byte, name string, err error) {
	body, err = yaml.YAMLToJSON(data)
	if err != nil {
		return nil, "", fmt.Errorf("not valid YAML or JSON: %w", err)
	}
	var head struct {
		Name any `json:"name"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return nil, "", fmt.Errorf("must hold one deployment, a mapping with name and spec")
	}
	if head.Name == nil || head.Name == "" {
		return nil, "", fmt.Errorf("name is required: add a line such as \"name: diabetes\" at the top")
	}
	name, ok := head.Name.(string)
	if !ok {
		return nil, "", fmt.Errorf("name must be a string such as \"diabetes\", got %v", head.Name)
	}
	return body, name, nil
}
