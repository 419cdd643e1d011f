package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/serving"
)

// deployFlags are the flags of `ebb deploy`.
type deployFlags struct {
	file    string
	wait    bool
	timeout time.Duration
}

func newDeployCmd() *cobra.Command {
	var f deployFlags
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
` + "`ebb get deployments NAME -o yaml`" + ` can be deployed again as is.

A new spec that runs other replicas (another model, engine, environment,
...) of a deployment that has replicas rolls them over: the old replicas
serve until as many of the new ones are ready, then drain. ebb deploy says
so, from which model to which; with --wait it follows the rollover, like
kubectl rollout status, and returns once the new spec serves everything (or
fails after --timeout).`,
		Example: `  ebb deploy -f diabetes.yaml
  ebb deploy -f deploy/examples/modeldeployment.yaml
  cat diabetes.json | ebb deploy -f -
  ebb deploy -f diabetes-v2.yaml --wait   # until v2 serves all traffic`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.file == "" {
				return fmt.Errorf("no file given: pass the deployment file with -f FILE (or -f - for standard input)")
			}
			if f.timeout <= 0 {
				return fmt.Errorf("--timeout %s must be above zero, such as 5m", f.timeout)
			}
			data, err := readInput(cmd, f.file)
			if err != nil {
				return err
			}
			docs, err := deploymentDocs(data)
			if err != nil {
				return fmt.Errorf("%s: %w", displayName(f.file), err)
			}
			return applyDocs(cmd, docs, f)
		},
	}
	cmd.Flags().StringVarP(&f.file, "filename", "f", "", `deployment file, YAML or JSON ("-" for standard input)`)
	cmd.Flags().BoolVar(&f.wait, "wait", false, "wait until each deployment's new spec serves all of its traffic (the rollover finished, the desired replicas ready), printing its replicas as they change")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 5*time.Minute, "with --wait, how long to wait for each deployment before failing")
	addServerFlag(cmd)
	return cmd
}

// applyDocs applies each deployment in turn, as kubectl apply does: one
// the server refuses does not stop the others, and the error names every
// refused one. A server that cannot be reached stops at once. A rollover
// is reported; with f.wait, each applied deployment is then waited for.
func applyDocs(cmd *cobra.Command, docs []deployDoc, f deployFlags) error {
	c := newAPIClient(cmd)
	w := cmd.OutOrStdout()
	var errs []error
	type applied struct {
		name string
		gen  int64
	}
	var waits []applied
	for _, d := range docs {
		for _, n := range d.notes {
			fmt.Fprintf(cmd.ErrOrStderr(), "Warning: deployment/%s: %s\n", d.name, n)
		}
		// What runs before, to report a rollover; none when it does not
		// exist (or cannot be read: the apply says why).
		var old *serving.Deployment
		if o, err := c.GetDeployment(cmd.Context(), d.name); err == nil {
			old = &o
		}
		dep, created, err := c.ApplyDeploymentJSON(cmd.Context(), d.name, d.body)
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
		roll := ""
		if !created {
			roll = rolloverText(old, dep)
		}
		if roll == "" {
			fmt.Fprintf(w, "deployment/%s %s\n", d.name, verb)
		} else {
			fmt.Fprintf(w, "deployment/%s %s: %s\n", d.name, verb, roll)
			if !f.wait {
				fmt.Fprintln(w, rolloverHint(old))
			}
		}
		waits = append(waits, applied{d.name, dep.Generation})
	}
	if f.wait {
		for _, a := range waits {
			if err := waitRollout(cmd.Context(), c, w, a.name, a.gen, f.timeout); err != nil {
				errs = append(errs, err)
			}
		}
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
