package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ebb-ml/ebb/internal/drift"
	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/registry"
)

// profileFlags say how to build a version's reference profile from a
// sample of its training data. The profile is built here, on the
// client: the sample never leaves the user's machine, only its
// statistics are sent.
type profileFlags struct {
	data        string
	outputs     []string
	categorical []string
	ignore      []string
	bins        int
}

// add adds the flags to f, each named prefix+"data" and so on.
func (p *profileFlags) add(f *pflag.FlagSet, prefix string) {
	f.StringVar(&p.data, prefix+"data", "", "sample of the training data (CSV with a header, or JSON lines of flat objects) to compute the version's reference profile from, for drift monitoring (ebb drift); its input columns named after the model's input tensors, or in the order of the one input tensor's columns")
	f.StringArrayVar(&p.outputs, prefix+"output-column", nil, "a column of the sample that is a model output (a label or prediction), not an input (repeatable)")
	f.StringArrayVar(&p.categorical, prefix+"categorical", nil, "a column to bin by value although it holds numbers, such as class codes (repeatable)")
	f.StringArrayVar(&p.ignore, prefix+"ignore", nil, "a column of the sample to leave out, such as an id (repeatable)")
	f.IntVar(&p.bins, prefix+"bins", 20, "quantile bins per numeric feature, and most distinct values kept per categorical one")
}

// build reads the sample and returns its profile; nil when no sample is
// given.
func (p *profileFlags) build(flag string) (*monitor.Profile, error) {
	if p.data == "" {
		return nil, nil
	}
	format := drift.SampleFormat(p.data)
	if format == "" {
		return nil, fmt.Errorf("%s %s: give a .csv file (with a header) or a .jsonl file (one JSON object per line)", flag, p.data)
	}
	f, err := os.Open(p.data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	defer f.Close()
	prof, err := drift.ReadSample(f, drift.SampleOptions{Format: format, Outputs: p.outputs, Categorical: p.categorical, Ignore: p.ignore,
		Profile: monitor.ProfileOptions{Bins: p.bins, TopValues: p.bins}})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, p.data, err)
	}
	return prof, nil
}

// describeProfile says what a profile holds, for people.
func describeProfile(p *monitor.Profile) string {
	var in, out []string
	for _, f := range p.Features {
		s := f.Name
		if f.Kind == monitor.Categorical {
			s += " (categorical)"
		}
		if f.Output {
			out = append(out, s)
		} else {
			in = append(in, s)
		}
	}
	d := fmt.Sprintf("%d rows; inputs: %s", p.Rows, strings.Join(in, ", "))
	if len(out) > 0 {
		d += "; outputs: " + strings.Join(out, ", ")
	}
	return d
}

func newModelsProfileCmd(output *string) *cobra.Command {
	var pf profileFlags
	var remove bool
	cmd := &cobra.Command{
		Use:   "profile NAME:VERSION [--data SAMPLE.csv]",
		Short: "Show or set a version's reference profile, the baseline of drift monitoring",
		Long: `Without --data, show the reference profile of a model version: per
feature, the bins and shares of a sample of its training data. With
--data, compute the profile from that sample (on this machine; only the
statistics are sent) and store it with the version, replacing any it had.
Deployments serving the version are then watched for drift (ebb drift).`,
		Example: `  ebb models profile diabetes:2 --data train.csv --output-column target
  ebb models profile diabetes@champion
  ebb models profile diabetes:2 --delete`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			c := newAPIClient(cmd)
			ref, err := resolveVersionArg(cmd, args[0])
			if err != nil {
				return err
			}
			switch {
			case remove:
				if err := c.DeleteProfile(cmd.Context(), ref.Model, ref.Version); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: reference profile removed\n", ref)
				return nil
			case pf.data != "":
				p, err := pf.build("--data")
				if err != nil {
					return err
				}
				if _, err := c.PutProfile(cmd.Context(), ref.Model, ref.Version, p); err != nil {
					return err
				}
				return writeOutput(cmd.OutOrStdout(), *output, p, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "%s: reference profile set from %s (%s)\n", ref, pf.data, describeProfile(p))
					return err
				})
			}
			p, err := c.GetProfile(cmd.Context(), ref.Model, ref.Version)
			if err != nil {
				return err
			}
			return writeOutput(cmd.OutOrStdout(), *output, p, func(w io.Writer) error { return writeProfileTable(w, ref, p) })
		},
	}
	pf.add(cmd.Flags(), "")
	cmd.Flags().BoolVar(&remove, "delete", false, "remove the version's profile: its deployments are no longer watched for drift")
	return cmd
}

// resolveVersionArg turns "name:N" or "name@alias" into a version.
func resolveVersionArg(cmd *cobra.Command, arg string) (registry.Ref, error) {
	ref, ok := registry.ParseRef(arg)
	if !ok {
		return registry.Ref{}, fmt.Errorf("%q names no model version: give NAME:VERSION (diabetes:2) or NAME@ALIAS (diabetes@champion)", arg)
	}
	if ref.Alias == "" {
		return ref, nil
	}
	a, err := newAPIClient(cmd).GetAlias(cmd.Context(), ref.Model, ref.Alias)
	if err != nil {
		return registry.Ref{}, err
	}
	return registry.Ref{Model: ref.Model, Version: a.Version}, nil
}

func writeProfileTable(w io.Writer, ref registry.Ref, p *monitor.Profile) error {
	if _, err := fmt.Fprintf(w, "%s: reference profile of %d rows\n\n", ref, p.Rows); err != nil {
		return err
	}
	rows := make([][]string, 0, len(p.Features))
	for _, f := range p.Features {
		kind := string(f.Kind)
		if f.Output {
			kind += "/output"
		}
		summary := fmt.Sprintf("mean %.4g, sd %.4g, range [%.4g, %.4g]", f.Mean, f.Std, f.Min, f.Max)
		if f.Kind == monitor.Categorical {
			top := f.Values
			if len(top) > 5 {
				top = append(top[:5:5], "...")
			}
			summary = "values " + strings.Join(top, ", ")
		}
		rows = append(rows, []string{f.Name, kind, fmt.Sprint(f.Count), fmt.Sprint(f.Missing), fmt.Sprint(f.Bins()), summary})
	}
	return writeRows(w, []string{"FEATURE", "KIND", "COUNT", "MISSING", "BINS", "SUMMARY"}, rows)
}
