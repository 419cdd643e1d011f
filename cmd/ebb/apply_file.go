package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/ebb-ml/ebb/internal/apiclient"
)

// specDoc is one object of a file, in the form the admin API takes.
type specDoc struct {
	name string
	body []byte // {"name": ..., "spec": ...}
}

// specDocs reads data, YAML documents separated by "---" lines or one
// JSON object, converting each non-empty document's JSON with one; none
// is the error for a file that holds no object. Every bad document is
// reported, by its number.
func specDocs(data []byte, one func(body []byte) (specDoc, error), none string) ([]specDoc, error) {
	var docs []specDoc
	var errs []error
	for i, p := range splitYAML(data) {
		body, err := yaml.YAMLToJSON(p)
		if t := bytes.TrimSpace(body); err == nil && (len(t) == 0 || string(t) == "null") {
			continue
		}
		var d specDoc
		if err == nil {
			d, err = one(body)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", i+1, err))
			continue
		}
		docs = append(docs, d)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(docs) == 0 {
		return nil, errors.New(none)
	}
	return docs, nil
}

// applyFile is what `ebb KIND apply -f FILE` needs of a kind of object.
type applyFile struct {
	noun string // what one object is called: "pool"
	// docs reads a file's objects.
	docs func(data []byte) ([]specDoc, error)
	// apply creates the object or replaces its spec, and says which.
	apply func(ctx context.Context, c *apiclient.Client, name string, body []byte) (created bool, err error)
}

// newApplyFileCmd is `apply -f FILE` for objects of kind k, with the
// command's texts.
func newApplyFileCmd(k applyFile, short, long, example string) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:     "apply -f FILE",
		Short:   short,
		Long:    long,
		Example: example,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("give the %s file with -f FILE (\"-\" for standard input)", k.noun)
			}
			data, err := readInput(cmd, file)
			if err != nil {
				return err
			}
			docs, err := k.docs(data)
			if err != nil {
				return fmt.Errorf("%s: %w", displayName(file), err)
			}
			c := newAPIClient(cmd)
			for _, d := range docs {
				created, err := k.apply(cmd.Context(), c, d.name, d.body)
				if err != nil {
					return fmt.Errorf("%s %s: %w", k.noun, d.name, err)
				}
				verb := "configured"
				if created {
					verb = "created"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s/%s %s\n", k.noun, d.name, verb)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", k.noun+` file, YAML or JSON ("-" for standard input)`)
	return cmd
}
