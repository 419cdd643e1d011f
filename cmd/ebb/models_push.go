package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/registry/mlflow"
)

// pushFlags are the flags push and import-mlflow share.
type pushFlags struct {
	name, alias, description string
	tags                     []string
	profile                  profileFlags // --profile-* (models_profile.go)
}

func (f *pushFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.alias, "alias", "", "point this alias (such as champion) at the new version")
	cmd.Flags().StringVar(&f.description, "description", "", "description of the model, when this push creates it")
	cmd.Flags().StringArrayVar(&f.tags, "tag", nil, "tag KEY=VALUE on the version (repeatable)")
	f.profile.add(cmd.Flags(), "profile-")
}

func newModelsPushCmd(output *string) *cobra.Command {
	var f pushFlags
	var md api.PushMetadata
	var params, metrics []string
	cmd := &cobra.Command{
		Use:   "push FILE|DIR --name NAME",
		Short: "Register a model file or directory as a new version; the engine must load it",
		Example: `  ebb models push examples/diabetes/model.json --name diabetes --alias champion \
      --data-uri s3://data/diabetes.csv --param max_depth=4 --metric rmse=54.1 --code-commit $(git rev-parse HEAD)
  ebb models push model.json --name churn --profile-data train-sample.csv --profile-output-column label
  ebb models push ./my-python-model --name churn --engine python`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			if f.name == "" {
				return fmt.Errorf("give the model's name: ebb models push %s --name NAME", args[0])
			}
			var err error
			if md.Lineage.Parameters, err = parseKV(params, "--param", func(s string) (string, error) { return s, nil }); err != nil {
				return err
			}
			if md.Lineage.Metrics, err = parseKV(metrics, "--metric", func(s string) (float64, error) {
				return strconv.ParseFloat(s, 64)
			}); err != nil {
				return err
			}
			return pushModel(cmd, *output, f, md, f.name, args[0])
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "model name (required): lowercase letters, digits and '-'")
	fl.StringVar(&md.Engine, "engine", "", "engine that loads the model: trees, onnx, python, ... (default: from the file extension)")
	fl.StringVar(&md.Entry, "entry", "", "for a directory: the file in it that the engine loads (default: found by extension)")
	fl.StringArrayVar(&params, "param", nil, "training parameter KEY=VALUE (repeatable)")
	fl.StringArrayVar(&metrics, "metric", nil, "hold-out metric KEY=NUMBER (repeatable)")
	fl.StringVar(&md.Lineage.DataURI, "data-uri", "", "URI of the training data")
	fl.StringVar(&md.Lineage.DataSHA256, "data-sha256", "", "SHA-256 of the training data")
	fl.StringVar(&md.Lineage.CodeCommit, "code-commit", "", "commit of the training code")
	fl.StringVar(&md.Lineage.Source, "source", "", "where the model came from, such as a CI job URL")
	return cmd
}

func newModelsImportCmd(output *string) *cobra.Command {
	var f pushFlags
	cmd := &cobra.Command{
		Use:     "import-mlflow DIR",
		Short:   "Register an MLflow model directory (xgboost saved as JSON, or onnx), keeping its run's metadata as lineage",
		Example: `  ebb models import-mlflow mlruns/0/4f1c.../artifacts/model --name diabetes --alias challenger`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			req, err := mlflow.Import(args[0], f.name)
			if err != nil {
				return err
			}
			md := api.PushMetadata{Engine: req.Engine, Signature: req.Signature, Lineage: req.Lineage, Tags: req.Tags}
			return pushModel(cmd, *output, f, md, req.Model, req.Path)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&f.name, "name", "", "model name (default: the directory's name)")
	return cmd
}

// pushModel uploads path as a new version of name and prints it.
func pushModel(cmd *cobra.Command, output string, f pushFlags, md api.PushMetadata, name, path string) error {
	tags, err := parseKV(f.tags, "--tag", func(s string) (string, error) { return s, nil })
	if err != nil {
		return err
	}
	for k, v := range tags {
		if md.Tags == nil {
			md.Tags = map[string]string{}
		}
		md.Tags[k] = v
	}
	md.Alias, md.Description, md.CreatedBy = f.alias, f.description, currentUser()
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("cannot read the model: %w", err)
	}
	// The profile is built first: a sample that cannot be read fails the
	// push before anything is stored.
	prof, err := f.profile.build("--profile-data")
	if err != nil {
		return err
	}
	c := newAPIClient(cmd)
	v, err := c.PushVersion(cmd.Context(), name, md, path)
	if err != nil {
		return err
	}
	if prof != nil {
		withProfile, err := c.PutProfile(cmd.Context(), v.Model, v.Version, prof)
		if err != nil {
			return fmt.Errorf("%s pushed, but its reference profile was not stored: %w (set it with `ebb models profile %s --data %s`)", v.Ref(), err, v.Ref(), f.profile.data)
		}
		v = withProfile
	}
	return writeOutput(cmd.OutOrStdout(), output, v, func(w io.Writer) error {
		fmt.Fprintf(w, "%s pushed (engine %s, sha256 %s, %s)\n", v.Ref(), v.Engine, shortSum(v.SHA256), humanBytes(v.Size))
		if md.Alias != "" {
			fmt.Fprintf(w, "alias %s@%s -> version %d\n", v.Model, md.Alias, v.Version)
		}
		if prof != nil {
			fmt.Fprintf(w, "reference profile from %s: %s\n", f.profile.data, describeProfile(prof))
		}
		return nil
	})
}

// parseKV parses KEY=VALUE flags.
func parseKV[V any](kvs []string, flag string, parse func(string) (V, error)) (map[string]V, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := make(map[string]V, len(kvs))
	for _, kv := range kvs {
		k, s, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q must be KEY=VALUE", flag, kv)
		}
		v, err := parse(s)
		if err != nil {
			return nil, fmt.Errorf("%s %q: the value must be a number", flag, kv)
		}
		out[k] = v
	}
	return out, nil
}

// currentUser names who pushes or moves an alias: $EBB_USER, else $USER.
func currentUser() string {
	if u := os.Getenv("EBB_USER"); u != "" {
		return u
	}
	return os.Getenv("USER")
}
