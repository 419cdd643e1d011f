package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/serving"
)

// addRolloutCommands adds start, status, pause, resume, abort and promote
// to `ebb rollout`: progressive canary rollouts (package rollout).
func addRolloutCommands(cmd *cobra.Command, output *string) {
	var req rollout.Request
	var steps string
	var interval time.Duration
	var maxErr, maxP99 float64
	var minReq int
	var gate rollout.ShadowCriteria
	start := &cobra.Command{
		Use:   "start DEPLOYMENT --to MODEL",
		Short: "Move a deployment's traffic to a new model version step by step, rolling back on errors or latency",
		Long: `Start a progressive canary: the new version (the canary) gets a share of
requests that grows step by step. A step advances only once the canary
served --min-requests in at least --interval, with an error rate (5xx and
engine errors) at most --max-error-rate and a p99 at most --max-p99-ratio
times the primary's over the same interval. Too little traffic waits; a
breach rolls back to the primary at once and records why. After the last
step the canary becomes the primary (the alias moves, if the deployment
follows one). Requests pin the canary with the header Ebb-Version: canary.

With --require-shadow-agreement or --require-shadow-requests the rollout
starts only if the deployment's shadow (` + "`ebb shadow start`" + `) serves the
same version and its verdict by those criteria is a pass (the other one
takes its default: 0.99, and the shadow's --requests, else 100); otherwise
it is refused with the verdict's reason (412). The shadow ends as the
rollout starts: the canary takes over.`,
		Example: `  ebb rollout start diabetes --to diabetes:4
  ebb rollout start diabetes --to diabetes:4 --steps 10,50,100 --interval 5m --max-error-rate 0.005
  ebb rollout start diabetes --to diabetes:4 --require-shadow-agreement 0.99 --require-shadow-requests 200`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			if steps != "" {
				req.Steps = nil
				for s := range strings.SplitSeq(steps, ",") {
					n, err := strconv.Atoi(strings.TrimSpace(s))
					if err != nil {
						return fmt.Errorf("--steps %q: give percents separated by commas, e.g. 5,25,50,100", steps)
					}
					req.Steps = append(req.Steps, n)
				}
			}
			f := cmd.Flags()
			if f.Changed("interval") {
				req.Interval = serving.D(interval)
			}
			if f.Changed("max-error-rate") {
				req.MaxErrorRate = &maxErr
			}
			if f.Changed("max-p99-ratio") {
				req.MaxP99Ratio = &maxP99
			}
			if f.Changed("min-requests") {
				req.MinRequests = &minReq
			}
			if f.Changed("require-shadow-agreement") || f.Changed("require-shadow-requests") {
				req.RequireShadow = &gate
			}
			st, err := newAPIClient(cmd).StartRollout(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return writeRollout(cmd.OutOrStdout(), *output, st)
		},
	}
	f := start.Flags()
	f.StringVar(&req.To, "to", "", "the version to roll out: a registry version (diabetes:4) or an artifact path")
	f.StringVar(&steps, "steps", "5,25,50,100", "the canary's weights in percent, ascending, ending at 100")
	f.DurationVar(&interval, "interval", time.Minute, "the shortest time a step lasts")
	f.Float64Var(&maxErr, "max-error-rate", 0.01, "the largest share of the canary's requests that may fail in a step (0.01 is 1%)")
	f.Float64Var(&maxP99, "max-p99-ratio", 1.5, "the canary's p99 may be at most this multiple of the primary's")
	f.IntVar(&minReq, "min-requests", 20, "the fewest requests a step must see before it is judged")
	f.Float64Var(&gate.MinAgreement, "require-shadow-agreement", 0, "start only if the shadow of --to agreed with the primary on at least this share of requests, e.g. 0.99")
	f.IntVar(&gate.MinRequests, "require-shadow-requests", 0, "start only if the shadow of --to judged at least this many requests")
	cmd.AddCommand(start)

	cmd.AddCommand(&cobra.Command{
		Use:     "status DEPLOYMENT",
		Short:   "Where a deployment's rollout is: phase, weight, why, and each step's measurements",
		Example: "  ebb rollout status diabetes\n  ebb rollout status diabetes -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			st, err := newAPIClient(cmd).GetRollout(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return writeRollout(cmd.OutOrStdout(), *output, st)
		},
	})
	for _, a := range []struct{ name, short string }{
		{"pause", "Hold a rollout at its step: the canary keeps its share and is not judged"},
		{"resume", "Continue a paused rollout; its step's interval starts again"},
		{"abort", "End a rollout: every request goes back to the primary"},
		{"promote", "Make the canary the primary now, skipping the steps left"},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:   a.name + " DEPLOYMENT",
			Short: a.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := checkOutput(*output); err != nil {
					return err
				}
				st, err := newAPIClient(cmd).RolloutAction(cmd.Context(), args[0], a.name)
				if err != nil {
					return err
				}
				return writeRollout(cmd.OutOrStdout(), *output, st)
			},
		})
	}
}

// writeRollout prints a rollout for people, or as JSON or YAML.
func writeRollout(w io.Writer, output string, st rollout.Status) error {
	return writeOutput(w, output, st, func(w io.Writer) error {
		fmt.Fprintf(w, "Deployment:  %s\nFrom:        %s\nTo:          %s (canary)\nPhase:       %s\nWeight:      %d%% to the canary\nReason:      %s\n",
			st.Deployment, st.From, st.To, st.Phase, st.Weight, st.Reason)
		fmt.Fprintf(w, "Policy:      steps %v, every %s, max error rate %g, max p99 ratio %g, min requests %d\n",
			st.Policy.Steps, st.Policy.Interval.Duration, st.Policy.MaxErrorRate, st.Policy.MaxP99Ratio, st.Policy.MinRequests)
		if len(st.History) == 0 {
			return nil
		}
		rows := make([][]string, len(st.History))
		for i, h := range st.History {
			rows[i] = []string{strconv.Itoa(h.Step + 1), fmt.Sprintf("%d%%", h.Weight), string(h.Outcome),
				fmt.Sprintf("%d/%d", h.Canary.Errors, h.Canary.Requests), h.Canary.P99.String(),
				fmt.Sprintf("%d/%d", h.Primary.Errors, h.Primary.Requests), h.Primary.P99.String(), h.Reason}
		}
		fmt.Fprintln(w, "Steps:")
		return writeIndented(w, []string{"STEP", "WEIGHT", "OUTCOME", "CANARY ERR/REQ", "CANARY P99", "PRIMARY ERR/REQ", "PRIMARY P99", "WHY"}, rows)
	})
}
