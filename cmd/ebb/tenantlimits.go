package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/serving"
)

// The tenant limits' commands: `ebb limits set|get|list|delete`. (The
// hard limits of `ebb up`, its flags, are in limits.go.)

func newLimitsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "limits",
		Aliases: []string{"limit"},
		Short:   "Set, list and delete tenant limits: requests per second and in flight, per tenant and deployment",
		Long: `A tenant limit bounds one tenant's requests: a token bucket (--rate requests
per second, --burst at once after a quiet spell) and a bound on requests in
flight (--concurrency), across all the tenant's deployments or, with
--deployment, on one. A request must pass both its tenant's limit and its
tenant's limit on the deployment; one over a limit is answered 429 Too Many
Requests, with Retry-After and a body that names the limit.

A request's tenant is its token's tenant (ebb tokens create --tenant; else the
token's name), an OIDC token's tenant claim or subject, or, with auth off, a
header. Tenant "*" is the default: every tenant without a limit of its own gets
a limit of that size, each its own. A limit with no bound exempts its tenant
from the default. --share weighs a tenant in fair queueing while a deployment
is cold or saturated.

In a cluster every gateway enforces its share of each limit; see docs/limits.md.
Changing limits needs an admin token.`,
		Example: `  ebb limits set acme --rate 10 --burst 20
  ebb limits set acme --deployment diabetes --concurrency 4
  ebb limits set '*' --rate 5
  ebb limits list
  ebb limits delete acme --deployment diabetes`,
	}
	addServerFlag(cmd)
	cmd.AddCommand(newLimitsSetCmd(), newLimitsGetCmd(), newLimitsListCmd(), newLimitsDeleteCmd())
	return cmd
}

func newLimitsSetCmd() *cobra.Command {
	var (
		deployment         string
		rate               float64
		burst, conc, share int32
		output             string
	)
	cmd := &cobra.Command{
		Use:   "set TENANT [--deployment D] [--rate R] [--burst B] [--concurrency C] [--share S]",
		Short: "Set a tenant's limit; bounds not given keep their values",
		Long: `Set creates TENANT's limit, across its deployments or on --deployment, or
changes the bounds given: the others keep their values. --burst defaults to the
rate, rounded up, whenever --rate is given without it. A bound of 0 is none:
--rate 0 --concurrency 0 leaves a limit that bounds nothing, which exempts the
tenant from the default ("*").`,
		Example: `  ebb limits set acme --rate 10 --burst 20 --concurrency 8
  ebb limits set acme --deployment diabetes --rate 2.5
  ebb limits set '*' --concurrency 4`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			f := cmd.Flags()
			if !f.Changed("rate") && !f.Changed("burst") && !f.Changed("concurrency") && !f.Changed("share") {
				return errors.New("give at least one of --rate, --burst, --concurrency or --share")
			}
			c, ctx := newAPIClient(cmd), cmd.Context()
			l, err := c.GetLimit(ctx, args[0], deployment)
			if err != nil && !isLimitNotFound(err) {
				return err
			}
			l.Tenant, l.Deployment = args[0], deployment
			if f.Changed("rate") {
				l.Rate, l.Burst = rate, 0
			}
			if f.Changed("burst") {
				l.Burst = burst
			}
			if f.Changed("concurrency") {
				l.Concurrency = conc
			}
			if f.Changed("share") {
				l.Share = share
			}
			out, created, err := c.PutLimit(ctx, l)
			if err != nil {
				return err
			}
			return writeOutput(cmd.OutOrStdout(), output, out, func(w io.Writer) error {
				verb := "changed"
				if created {
					verb = "created"
				}
				bounds := out.Describe()
				if out.Unbounded() && out.Tenant != serving.DefaultTenant {
					bounds += ` (the tenant is exempt from the default, "*", at this level)`
				}
				_, err := fmt.Fprintf(w, "limit of %s %s: %s\n", out.Key(), verb, bounds)
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&deployment, "deployment", "", "the deployment (or route object) the limit is on; default all of the tenant's deployments")
	f.Float64Var(&rate, "rate", 0, "requests per second, sustained (0: no rate limit)")
	f.Int32Var(&burst, "burst", 0, "requests at once after a quiet spell: the bucket's size (default the rate, rounded up)")
	f.Int32Var(&conc, "concurrency", 0, "requests in flight at once (0: no bound)")
	f.Int32Var(&share, "share", 0, "weight in fair queueing while a deployment is cold or saturated (0: 1)")
	addOutputFlag(cmd, &output)
	return cmd
}

func isLimitNotFound(err error) bool {
	e, ok := errors.AsType[*apiclient.Error](err)
	return ok && e.Code == "limit/not_found"
}

func newLimitsGetCmd() *cobra.Command {
	var deployment, output string
	cmd := &cobra.Command{
		Use:   "get TENANT [--deployment D]",
		Short: "Show a tenant's limit, across its deployments or on one",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			l, err := newAPIClient(cmd).GetLimit(cmd.Context(), args[0], deployment)
			if err != nil {
				return err
			}
			return writeOutput(cmd.OutOrStdout(), output, l, func(w io.Writer) error {
				return writeLimitTable(w, []serving.Limit{l}, time.Now())
			})
		},
	}
	cmd.Flags().StringVar(&deployment, "deployment", "", "the deployment the limit is on; default the tenant-wide limit")
	addOutputFlag(cmd, &output)
	return cmd
}

func newLimitsListCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List every tenant limit",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			ls, err := newAPIClient(cmd).ListLimits(cmd.Context())
			if err != nil {
				return err
			}
			return writeOutput(cmd.OutOrStdout(), output, api.LimitList{Items: ls}, func(w io.Writer) error {
				if len(ls) == 0 {
					_, err := fmt.Fprintln(w, "No tenant limits: every tenant's requests pass. Set one with `ebb limits set TENANT --rate 10`.")
					return err
				}
				return writeLimitTable(w, ls, time.Now())
			})
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

// writeLimitTable writes one row per limit.
func writeLimitTable(w io.Writer, ls []serving.Limit, now time.Time) error {
	rows := make([][]string, len(ls))
	for i, l := range ls {
		dep := l.Deployment
		if dep == "" {
			dep = "(all)"
		}
		rate, burst := "-", "-"
		if l.Rate > 0 {
			rate, burst = serving.FormatRate(l.Rate)+"/s", strconv.Itoa(int(l.Burst))
		}
		conc := "-"
		if l.Concurrency > 0 {
			conc = strconv.Itoa(int(l.Concurrency))
		}
		rows[i] = []string{l.Tenant, dep, rate, burst, conc, strconv.Itoa(int(l.Weight())), age(now, l.UpdatedAt)}
	}
	return writeRows(w, []string{"TENANT", "DEPLOYMENT", "RATE", "BURST", "CONCURRENCY", "SHARE", "UPDATED"}, rows)
}

func newLimitsDeleteCmd() *cobra.Command {
	var deployment string
	cmd := &cobra.Command{
		Use:   "delete TENANT [--deployment D]",
		Short: "Delete a tenant's limit; the default (\"*\"), if any, applies to it again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := newAPIClient(cmd).DeleteLimit(cmd.Context(), args[0], deployment); err != nil {
				return err
			}
			k := serving.LimitKey{Tenant: args[0], Deployment: deployment}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "limit of %s deleted\n", k)
			return err
		},
	}
	cmd.Flags().StringVar(&deployment, "deployment", "", "the deployment the limit is on; default the tenant-wide limit")
	return cmd
}
