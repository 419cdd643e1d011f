package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/registry"
)

func newModelsTagCmd(output *string) *cobra.Command {
	return &cobra.Command{
		Use:   "tag NAME:VERSION KEY=VALUE... [KEY-]...",
		Short: "Set (KEY=VALUE) or remove (KEY-) tags of a version",
		Example: `  ebb models tag diabetes:3 stage=prod reviewed-by=alice
  ebb models tag diabetes@champion stage-`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			ref, ok := registry.ParseRef(args[0])
			if !ok {
				return fmt.Errorf("%q names no version: write NAME:VERSION (diabetes:3) or NAME@ALIAS", args[0])
			}
			tags, err := parseTagEdits(args[1:])
			if err != nil {
				return err
			}
			c := newAPIClient(cmd)
			ctx := cmd.Context()
			n := ref.Version
			if ref.Alias != "" {
				a, err := c.GetAlias(ctx, ref.Model, ref.Alias)
				if err != nil {
					return err
				}
				n = a.Version
			}
			v, err := c.PatchVersionTags(ctx, ref.Model, n, tags)
			if err != nil {
				return err
			}
			return writeOutput(cmd.OutOrStdout(), *output, v, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%s tags: %s\n", v.Ref(), orNone(joinMap(v.Tags, func(s string) string { return s })))
				return err
			})
		},
	}
}

// parseTagEdits reads KEY=VALUE (set) and KEY- (remove) arguments into a
// merge patch of tags.
func parseTagEdits(args []string) (map[string]*string, error) {
	tags := map[string]*string{}
	for _, a := range args {
		var key string
		var val *string
		if k, v, ok := strings.Cut(a, "="); ok {
			key, val = k, &v
		} else if k, ok := strings.CutSuffix(a, "-"); ok {
			key = k
		} else {
			return nil, fmt.Errorf("%q is not a tag edit: write KEY=VALUE to set a tag or KEY- to remove it", a)
		}
		if key == "" || strings.ContainsAny(key, " \t\n") {
			return nil, fmt.Errorf("%q: a tag key must be non-empty and hold no spaces", a)
		}
		if _, dup := tags[key]; dup {
			return nil, fmt.Errorf("tag %q is edited twice: give each key once", key)
		}
		tags[key] = val
	}
	return tags, nil
}

func newModelsDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME[:VERSION]",
		Short: "Delete a version (or a model with all its versions) that nothing uses",
		Long: `Delete a model version, or with NAME alone a model with every version.

A deleted version's artifact is removed; its record stays, marked purged,
for lineage and serving history, and its number is never reused. A version
that an alias points at, or that a deployment names or runs, is not deleted:
the error names what uses it (move the alias, point the deployment elsewhere
or delete it, then try again).`,
		Example: `  ebb models delete diabetes:2
  ebb models delete diabetes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := newAPIClient(cmd)
			w := cmd.OutOrStdout()
			if ref, ok := registry.ParseRef(args[0]); ok {
				if ref.Alias != "" {
					return fmt.Errorf("%s is an alias, and a version an alias points at is in use: delete a version by number (`ebb models delete %s:VERSION`)", args[0], ref.Model)
				}
				v, err := c.DeleteVersion(cmd.Context(), ref.Model, ref.Version)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(w, "%s deleted (%s: its artifact is removed, its record kept for lineage)\n", v.Ref(), v.State)
				return err
			}
			if err := registry.ValidateName("model name", args[0]); err != nil {
				return fmt.Errorf("%v: write NAME or NAME:VERSION", err)
			}
			if err := c.DeleteModel(cmd.Context(), args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(w, "model %s deleted\n", args[0])
			return err
		},
	}
}
