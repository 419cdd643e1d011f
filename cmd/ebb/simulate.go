package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/simulate"
)

// simulateOutput is what `ebb simulate -o json` prints.
type simulateOutput struct {
	Requests         int64   `json:"requests"`
	Seconds          int     `json:"seconds"`
	ReplicaSeconds   float64 `json:"replicaSeconds"`
	AlwaysOnSeconds  float64 `json:"alwaysOnSeconds"`
	PeakReplicas     int32   `json:"peakReplicas"`
	Reduction        float64 `json:"reduction"`
	SLO              string  `json:"slo"`
	MetSLO           float64 `json:"metSLOPercent"`
	MetSLOWhenWarm   float64 `json:"metSLOWhenWarmPercent"`
	ColdStarts       int     `json:"coldStarts"`
	HeldWhileCold    int64   `json:"heldWhileCold"`
	LongestWaitMs    float64 `json:"longestWaitMs"`
	P50Ms            float64 `json:"p50Ms"`
	P99Ms            float64 `json:"p99Ms"`
	ColdStartSeconds float64 `json:"coldStartSeconds"`
}

func newSimulateCmd() *cobra.Command {
	var (
		traceFile, scenario, file, writeTrace, output, start string
		fromHistory                                          string
		coldStarts, serviceTimes                             []time.Duration
		slo                                                  time.Duration
		peak                                                 float64
		capacity                                             int
	)
	cmd := &cobra.Command{
		Use:   "simulate (--trace FILE | --scenario business-hours) [-f DEPLOYMENT.yaml] | --from-history DEPLOYMENT",
		Short: "Replay a request trace through the autoscaler and report replica-seconds against always-on",
		Long: `Replay a request trace, a week in seconds, through ebb's own autoscaler
and schedule code with a simulated clock, and report what the deployment
would use: replica-seconds against running its peak all the time (the
reduction factor), the requests that met the latency objective, and its
cold starts. Nothing is started; no server is needed.

--from-history DEPLOYMENT instead replays the decisions the server's
autoscaler took for a deployment, each from the inputs it recorded
(window averages, requests in flight, ready replicas, panic state, the
policy and any schedule window), and shows whether it comes out the same:
why it scaled, checked.

The trace is a CSV file of SECOND,REQUESTS rows (seconds from the start,
those without requests left out: export it from your access logs), or a
built-in scenario: business-hours, a week of weekday traffic from 07:00 to
17:00 Europe/Paris rising to --peak requests a second.

The deployment's scaling (spec.scaling, schedule included) comes from -f, a
file as ebb deploy takes it; without -f, the defaults. Cold starts and
service times are drawn in turn from --cold-start and --service-time:
measure them with ebb describe (a replica's cold-start phases) or the
bench.`,
		Example: `  ebb simulate --scenario business-hours -f examples/schedule/deployment.yaml --service-time 200ms,300ms,400ms --cold-start 20ms
  ebb simulate --trace week.csv -f deployment.yaml --slo 500ms -o json
  ebb simulate --scenario business-hours --write-trace week.csv   # the scenario's trace, to edit or share
  ebb simulate --from-history diabetes                             # why did it scale?`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if fromHistory != "" {
				if traceFile != "" || scenario != "" || file != "" {
					return errors.New("--from-history replays recorded decisions: give it alone, without --trace, --scenario or -f")
				}
				return simulateHistory(cmd, fromHistory, output)
			}
			var trace simulate.Counts
			begin := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC) // a Monday
			switch {
			case (traceFile == "") == (scenario == ""):
				return errors.New("give --trace FILE (a SECOND,REQUESTS CSV) or --scenario business-hours")
			case traceFile != "":
				f, err := os.Open(traceFile)
				if err != nil {
					return fmt.Errorf("open the trace: %w", err)
				}
				defer f.Close()
				if trace, err = simulate.ReadCSV(f); err != nil {
					return fmt.Errorf("%s: %w", traceFile, err)
				}
			case scenario == "business-hours":
				paris, err := time.LoadLocation("Europe/Paris")
				if err != nil {
					return err
				}
				begin = time.Date(2026, 12, 7, 0, 0, 0, 0, paris)
				trace = simulate.BusinessHours(peak, paris, begin)
			default:
				return fmt.Errorf("unknown scenario %q: the one built in is business-hours", scenario)
			}
			if start != "" {
				t, err := time.Parse(time.RFC3339, start)
				if err != nil {
					return fmt.Errorf("--start %q: give an RFC 3339 time, such as 2026-12-07T00:00:00+01:00", start)
				}
				begin = t
			}
			if writeTrace != "" {
				f, err := os.Create(writeTrace)
				if err != nil {
					return err
				}
				if err := simulate.WriteCSV(f, trace); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
			}
			spec := serving.Spec{Engine: "echo"}
			if file != "" {
				data, err := readInput(cmd, file)
				if err != nil {
					return err
				}
				docs, err := deploymentDocs(data)
				if err != nil {
					return err
				}
				if len(docs) != 1 {
					return fmt.Errorf("%s holds %d deployments: simulate one at a time", file, len(docs))
				}
				var d serving.Deployment
				if err := json.Unmarshal(docs[0].body, &d); err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
				spec = d.Spec
			}
			spec.Default()
			if err := (&serving.Deployment{Name: "simulated", Spec: spec}).Validate(); err != nil {
				return err
			}
			rep, err := simulate.Run(simulate.Config{Scaling: spec.Scaling, Start: begin, ColdStarts: coldStarts, ServiceTimes: serviceTimes,
				Capacity: capacity, SLO: slo, Seed: 1}, trace)
			if err != nil {
				return err
			}
			out := simulateOutput{Requests: rep.Requests, Seconds: rep.Seconds, ReplicaSeconds: rep.ReplicaSeconds, AlwaysOnSeconds: rep.AlwaysOnSeconds,
				PeakReplicas: rep.PeakReplicas, Reduction: rep.Reduction(), SLO: slo.String(), MetSLO: rep.MetSLOPercent(),
				MetSLOWhenWarm: rep.MetSLOWarmPercent(), ColdStarts: rep.ColdStarts, HeldWhileCold: rep.ColdRequests,
				LongestWaitMs: ms(rep.MaxWait), P50Ms: ms(rep.P50), P99Ms: ms(rep.P99), ColdStartSeconds: rep.ColdStartTime.Seconds()}
			return writeOutput(cmd.OutOrStdout(), output, out, func(w io.Writer) error {
				fmt.Fprintf(w, "Trace:           %d requests over %s (from %s)\n", out.Requests, time.Duration(out.Seconds)*time.Second, begin.Format(time.RFC3339))
				fmt.Fprintf(w, "Replica-seconds: %.0f, against %.0f always-on at the peak of %d: reduction %.3f\n", out.ReplicaSeconds, out.AlwaysOnSeconds, out.PeakReplicas, out.Reduction)
				fmt.Fprintf(w, "Latency:         p50 %.0f ms, p99 %.0f ms; SLO %s met by %.2f%% (%.2f%% of those that found a replica ready)\n", out.P50Ms, out.P99Ms, out.SLO, out.MetSLO, out.MetSLOWhenWarm)
				_, err := fmt.Fprintf(w, "Cold starts:     %d (%.1f s in all); %d requests held while cold, the longest %.0f ms\n", out.ColdStarts, out.ColdStartSeconds, out.HeldWhileCold, out.LongestWaitMs)
				return err
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&traceFile, "trace", "", "the trace: a CSV of SECOND,REQUESTS rows")
	fl.StringVar(&scenario, "scenario", "", "a built-in trace instead: business-hours")
	fl.Float64Var(&peak, "peak", 40, "business-hours: the peak requests a second")
	fl.StringVarP(&file, "filename", "f", "", "the deployment whose spec.scaling to replay, as ebb deploy takes it")
	fl.DurationSliceVar(&coldStarts, "cold-start", []time.Duration{20 * time.Millisecond}, "cold starts, drawn in turn")
	fl.DurationSliceVar(&serviceTimes, "service-time", []time.Duration{10 * time.Millisecond}, "service times of a request, drawn in turn")
	fl.DurationVar(&slo, "slo", time.Second, "the latency objective")
	fl.IntVar(&capacity, "capacity", 0, "requests one replica serves at once (default twice the target concurrency)")
	fl.StringVar(&start, "start", "", "the simulated time of the trace's start, RFC 3339 (default Monday 2026-12-07 00:00, Europe/Paris for the scenario)")
	fl.StringVar(&writeTrace, "write-trace", "", "also write the trace replayed to this CSV file")
	fl.StringVar(&fromHistory, "from-history", "", "replay the decisions the server's autoscaler recorded for this deployment instead")
	fl.StringVarP(&output, "output", "o", outputTable, "output format: table, json or yaml")
	return cmd
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
