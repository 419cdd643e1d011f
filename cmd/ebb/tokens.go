package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
)

func newTokensCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tokens",
		Short: "Create, list and revoke API tokens (needs an admin token)",
		Long: `API tokens authenticate requests to ebb: "Authorization: Bearer ebb_<id>_<secret>".
Each token has scopes:

  admin          everything, tokens included
  read           read deployments, models, events, logs and metrics
  deploy         create, change and delete deployments (and read)
  models:write   push, tag and delete registry models (and read)
  exec           deploy code: engine http with a command, or engine python (beside deploy)
  predict:GLOB   inference on deployments whose name matches GLOB (predict:*, predict:fraud-*)

The server keeps only a hash of each token: its secret is printed once, by
create. The CLI sends --token, else $EBB_TOKEN, else the context's token,
else, for a server on loopback, the admin token that ` + "`ebb up`" + ` wrote to
$EBB_DATA_DIR/admin.token or ./.ebb/admin.token.`,
	}
	addServerFlag(cmd)
	cmd.AddCommand(newTokensCreateCmd(), newTokensListCmd(), newTokensRevokeCmd())
	return cmd
}

func newTokensCreateCmd() *cobra.Command {
	var (
		scopes  []string
		name    string
		tenant  string
		expires time.Duration
		output  string
	)
	cmd := &cobra.Command{
		Use:   "create --scope SCOPE [--scope SCOPE...] [--name NAME] [--expires DURATION]",
		Short: "Create a token and print its secret, once",
		Example: `  ebb tokens create --scope deploy --scope 'predict:*' --name ci
  ebb tokens create --scope predict:fraud --expires 720h
  ebb tokens create --scope 'predict:*' --name acme-prod --tenant acme`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if len(scopes) == 0 {
				return fmt.Errorf("give at least one --scope: admin, read, deploy, models:write, exec or predict:NAME")
			}
			for _, s := range scopes {
				if err := auth.ValidateScope(s); err != nil {
					return err
				}
			}
			if tenant != "" {
				if err := auth.ValidateTenant(tenant); err != nil {
					return fmt.Errorf("--tenant %w", err)
				}
			}
			req := api.TokenRequest{Name: name, Scopes: scopes, Tenant: tenant}
			if expires < 0 {
				return fmt.Errorf("--expires %s is negative: give how long the token lives, such as 720h", expires)
			}
			if expires > 0 {
				req.ExpiresAt = time.Now().Add(expires).UTC()
			}
			tok, err := newAPIClient(cmd).CreateToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			return writeOutput(cmd.OutOrStdout(), output, tok, func(w io.Writer) error {
				fmt.Fprintf(w, "token/%s created with scopes %s\n", tok.ID, strings.Join(tok.Scopes, ", "))
				fmt.Fprintf(w, "\n  %s\n\n", tok.Secret)
				fmt.Fprintln(w, "This secret is shown once: keep it now. Send it as \"Authorization: Bearer TOKEN\", or with the CLI as --token, $EBB_TOKEN or a context's token (ebb config set-context).")
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&scopes, "scope", nil, "scope of the token; repeat for more, or separate with commas (admin, read, deploy, models:write, exec, predict:GLOB)")
	f.StringVar(&name, "name", "", "name of the token, for lists and logs")
	f.StringVar(&tenant, "tenant", "", "tenant the token's requests count against (ebb limits, fair queueing); default the token's name")
	f.DurationVar(&expires, "expires", 0, "how long the token works, such as 720h; 0: until revoked")
	addOutputFlag(cmd, &output)
	cmd.PreRunE = func(*cobra.Command, []string) error {
		var split []string
		for _, s := range scopes {
			for p := range strings.SplitSeq(s, ",") {
				if p = strings.TrimSpace(p); p != "" {
					split = append(split, p)
				}
			}
		}
		scopes = split
		return nil
	}
	return cmd
}

func newTokensListCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			toks, err := newAPIClient(cmd).ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			return writeOutput(cmd.OutOrStdout(), output, api.TokenList{Items: toks}, func(w io.Writer) error {
				return tokenTable(w, time.Now(), toks)
			})
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

func tokenTable(w io.Writer, now time.Time, toks []auth.Token) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tTENANT\tSCOPES\tAGE\tEXPIRES")
	for _, t := range toks {
		exp := "never"
		switch {
		case t.Expired(now):
			exp = "expired"
		case !t.ExpiresAt.IsZero():
			exp = "in " + age(now, now.Add(-t.ExpiresAt.Sub(now)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.TenantOf(), strings.Join(t.Scopes, ","), age(now, t.CreatedAt), exp)
	}
	return tw.Flush()
}

func newTokensRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token: it stops working",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			// Accept the whole token too: its id is the part after ebb_.
			if tid, _, ok := auth.ParseToken(id); ok {
				id = tid
			}
			if err := newAPIClient(cmd).RevokeToken(cmd.Context(), id); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token/%s revoked\n", id)
			return nil
		},
	}
}
