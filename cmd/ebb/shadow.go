package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// Bounds of what `ebb shadow status` prints of the sample disagreements;
// -o json has them whole.
const (
	shownSamples     = 3
	shownSampleBytes = 160
)

func newShadowCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "shadow",
		Short: "Mirror a share of a deployment's requests to another version and compare the answers",
		Long: `A shadow gets a copy of a share of a deployment's requests; ebb compares
its answers with the primary's, tensor by tensor within a tolerance, and
counts agreement, shadow errors and latency. Clients only ever get the
primary's answer and never wait for the shadow.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	addServerFlag(cmd)
	addOutputFlag(cmd, &output)
	cmd.AddCommand(newShadowStartCmd(&output), newShadowStatusCmd(&output), newShadowStopCmd(&output))
	return cmd
}

func newShadowStartCmd(output *string) *cobra.Command {
	var req rollout.ShadowRequest
	var duration time.Duration
	var tolerance float64
	start := &cobra.Command{
		Use:   "start DEPLOYMENT --to MODEL",
		Short: "Mirror requests to a shadow version and compare its answers with the primary's",
		Long: `Start mirroring --percent of the deployment's requests to the version
--to, on replicas of its own (scaled 0:N on the mirrored load), and compare
each answer with the primary's: every output tensor, element by element,
agrees when |shadow - primary| <= abs + rel × |primary|. --tolerance T sets
both abs and rel to T (default abs 1e-6, rel 1e-5: float32 rounding). At
most --max-concurrency mirrored requests are in flight per gateway; a copy
beyond that is dropped, and counted. Mirroring stops after --requests
judged requests or after --duration; with neither it goes on until
` + "`ebb shadow stop`" + `. A new start replaces the deployment's shadow, and its
figures start from nothing. A shadow's inputs must match the primary's.`,
		Example: `  ebb shadow start diabetes --to diabetes:4 --requests 500
  ebb shadow start diabetes --to diabetes@challenger --percent 10 --duration 1h --tolerance 1e-4`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			f := cmd.Flags()
			// 0 would mean the server's default, not none.
			if req.Percent < 1 || req.Percent > 100 {
				return fmt.Errorf("--percent %d: give a share of 1 to 100", req.Percent)
			}
			if req.MaxConcurrency < 1 {
				return fmt.Errorf("--max-concurrency %d: give 1 or more", req.MaxConcurrency)
			}
			if f.Changed("duration") {
				req.Duration = serving.D(duration)
			}
			if f.Changed("tolerance") {
				req.Tolerance = &serving.Tolerance{Abs: tolerance, Rel: tolerance}
			}
			st, err := newAPIClient(cmd).StartShadow(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return writeShadow(cmd.OutOrStdout(), *output, st)
		},
	}
	f := start.Flags()
	f.StringVar(&req.To, "to", "", "the version to mirror requests to: a registry version (diabetes:4, diabetes@challenger) or an artifact path")
	f.Int32Var(&req.Percent, "percent", 100, "the share of the primary's requests mirrored, 1 to 100")
	f.Int64Var(&req.Requests, "requests", 0, "stop mirroring after this many judged requests (0: no limit)")
	f.DurationVar(&duration, "duration", 0, "stop mirroring after this long, e.g. 30m (0: no limit)")
	f.Float64Var(&tolerance, "tolerance", 0, "the agreement bound, as both absolute and relative tolerance (default abs 1e-6, rel 1e-5)")
	f.Int32Var(&req.MaxConcurrency, "max-concurrency", 4, "the most mirrored requests in flight per gateway; copies beyond are dropped and counted")
	start.MarkFlagsMutuallyExclusive("requests", "duration")
	return start
}

func newShadowStatusCmd(output *string) *cobra.Command {
	var crit rollout.ShadowCriteria
	status := &cobra.Command{
		Use:   "status DEPLOYMENT",
		Short: "How a deployment's shadow compares with the primary: agreement, errors, latency, a verdict",
		Long: `Show what the gateways compared of the deployment's shadow, and a verdict:
pass when at least --min-requests were judged (compared, or failed by the
shadow) and at least --min-agreement of them agreed; fail when fewer
agreed; pending while too few were judged. A shadow error counts as a
disagreement. Where the deployment has 2 primary replicas or more, the
primary is also compared with itself on the same inputs (NOISE): how much
it disagrees with itself.`,
		Example: `  ebb shadow status diabetes
  ebb shadow status diabetes --min-agreement 0.999 --min-requests 1000 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			st, err := newAPIClient(cmd).GetShadow(cmd.Context(), args[0], crit)
			if err != nil {
				return err
			}
			return writeShadow(cmd.OutOrStdout(), *output, st)
		},
	}
	f := status.Flags()
	f.Float64Var(&crit.MinAgreement, "min-agreement", 0, "the share of judged requests that must agree for a pass (default 0.99)")
	f.IntVar(&crit.MinRequests, "min-requests", 0, "the fewest judged requests for a verdict (default the shadow's --requests, else 100)")
	return status
}

func newShadowStopCmd(output *string) *cobra.Command {
	return &cobra.Command{
		Use:   "stop DEPLOYMENT",
		Short: "Stop mirroring requests to a deployment's shadow, and show its last figures",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			st, err := newAPIClient(cmd).StopShadow(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return writeShadow(cmd.OutOrStdout(), *output, st)
		},
	}
}

// writeShadow prints a shadow for people, or as JSON or YAML.
func writeShadow(w io.Writer, output string, st rollout.ShadowStatus) error {
	return writeOutput(w, output, st, func(w io.Writer) error {
		state := "stopped"
		if st.Active {
			state = "mirroring"
		}
		fmt.Fprintf(w, "Deployment:  %s\nShadow:      %s, %d%% of requests, %s (%s)\nTolerance:   abs %g, rel %g; at most %d in flight\n",
			st.Deployment, st.Model, st.Percent, shadowBound(st), state, st.Tolerance.Abs, st.Tolerance.Rel, st.MaxConcurrency)
		noise := "-"
		if st.NoiseCompared > 0 {
			noise = fmt.Sprintf("%s of %d", percentOf(st.NoiseAgreement), st.NoiseCompared)
		}
		ratio := "-"
		if st.LatencyRatio > 0 {
			ratio = strconv.FormatFloat(st.LatencyRatio, 'f', 2, 64) + "x"
		}
		agreement := "-"
		if st.Compared > 0 {
			agreement = percentOf(st.Agreement)
		}
		fmt.Fprintln(w, "Compared:")
		if err := writeIndented(w, []string{"COMPARED", "AGREED", "AGREEMENT", "SHADOW ERRORS", "DROPPED", "LATENCY RATIO", "NOISE"}, [][]string{{
			strconv.FormatInt(st.Compared, 10), strconv.FormatInt(st.Agreed, 10), agreement,
			strconv.FormatInt(st.ShadowErrors, 10), strconv.FormatInt(st.Dropped, 10), ratio, noise,
		}}); err != nil {
			return err
		}
		fmt.Fprintf(w, "Verdict:     %s: %s (needs %s agreement over %d requests)\n",
			st.Verdict.Outcome, st.Verdict.Reason, percentOf(st.Criteria.MinAgreement), st.Criteria.MinRequests)
		if st.LastShadowError != "" {
			fmt.Fprintf(w, "Last shadow error: %s\n", clipLine(st.LastShadowError, shownSampleBytes))
		}
		if len(st.Samples) == 0 {
			return nil
		}
		fmt.Fprintf(w, "Disagreements (%d of %d kept; -o json has them whole):\n", min(len(st.Samples), shownSamples), len(st.Samples))
		for i, s := range st.Samples[:min(len(st.Samples), shownSamples)] {
			fmt.Fprintf(w, "  %d. %s\n     input:   %s\n     primary: %s\n     shadow:  %s\n",
				i+1, sampleDiff(s.Diff), clipLine(s.Input, shownSampleBytes), clipLine(s.Primary, shownSampleBytes), clipLine(s.Shadow, shownSampleBytes))
		}
		return nil
	})
}

// shadowBound says when a shadow stops mirroring.
func shadowBound(st rollout.ShadowStatus) string {
	var b []string
	if st.Requests > 0 {
		b = append(b, fmt.Sprintf("for %d requests", st.Requests))
	}
	if st.Until != "" {
		b = append(b, "until "+st.Until)
	}
	if len(b) == 0 {
		return "until stopped"
	}
	return strings.Join(b, " or ")
}

// sampleDiff says what differs in one sample disagreement.
func sampleDiff(r traffic.Result) string {
	if r.Reason != "" {
		return r.Reason
	}
	return fmt.Sprintf("output %q differs at %d: %s vs %s", r.Tensor, r.Index, r.Primary, r.Shadow)
}

// percentOf formats a fraction as a percentage with one decimal.
func percentOf(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" }

// clipLine shortens s to about n bytes, on a character boundary, on one line.
func clipLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + fmt.Sprintf("…(%d more bytes)", len(s)-i)
}
