package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	"github.com/ebb-ml/ebb/internal/apiclient"
)

// defaultServer is the admin API address `ebb up` listens on by default.
const defaultServer = "http://127.0.0.1:8080"

// serverEnv names the environment variable that overrides defaultServer.
const serverEnv = "EBB_SERVER"

// serverAnnotation marks commands that talk to an ebb server: before they
// run, the server is picked (see resolveTarget) and a bad choice, such as
// an unknown --context, is reported.
const serverAnnotation = "ebb.dev/talks-to-server"

// addGlobalFlags adds --server and --context to root, for every command.
func addGlobalFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.String("server", "", fmt.Sprintf("URL of the ebb server; wins over --context (default: the current context, $%s, else %s)", serverEnv, defaultServer))
	f.String("context", "", "name of the context to talk to, from the config file (list them with: ebb config get-contexts)")
	f.String("ca-file", "", fmt.Sprintf("PEM file of a CA to trust for an https server, besides the system's (default: $%s, else the context's ca-file)", caFileEnv))
	f.String("token", "", fmt.Sprintf("API token to send, for this command only (default: $%s, the context's token, else for a server on loopback the admin token that ebb up keeps in its data dir)", tokenEnv))
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if !talksToServer(cmd) {
			return nil
		}
		t, err := resolveTarget(cmd)
		if err != nil {
			return err
		}
		cmd.SetContext(context.WithValue(cmd.Context(), targetKey{}, t))
		return nil
	}
}

// addServerFlag marks cmd (and its subcommands) as talking to an ebb
// server; --server and --context are global flags.
func addServerFlag(cmd *cobra.Command) {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[serverAnnotation] = "true"
}

func talksToServer(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		if c.Annotations[serverAnnotation] != "" {
			return true
		}
	}
	return false
}

// target is the server a command talks to, and how it was chosen.
type target struct {
	server string
	token  string
	caFile string // a CA to trust besides the system's (tls.go)
	// tokenFrom says where token came from, for messages.
	tokenFrom string
	// from says where server came from, for messages: "--server",
	// `context "prod" (/home/me/.config/ebb/config.yaml)`, "$EBB_SERVER",
	// "the default".
	from string
}

type targetKey struct{}

// flagString returns a flag's value, "" when cmd has no such flag.
func flagString(cmd *cobra.Command, name string) string {
	s, _ := cmd.Flags().GetString(name)
	return s
}

// resolveTarget picks the server: --server, else --context, else
// $EBB_SERVER, else the config file's current context, else
// defaultServer. A context's token goes with its server; with --server and
// --context, the context's token goes to --server. A bare host:port gets
// http://.
func resolveTarget(cmd *cobra.Command) (target, error) {
	server, ctxName := flagString(cmd, "server"), flagString(cmd, "context")
	var t target
	if ctxName != "" || (server == "" && os.Getenv(serverEnv) == "") {
		path, err := configPath()
		if err != nil {
			if ctxName == "" {
				t := target{server: defaultServer, from: "the default"}
				t.token, t.tokenFrom = resolveToken(flagString(cmd, "token"), t)
				return t, nil
			}
			return target{}, err
		}
		c, err := loadConfig(path)
		if err != nil {
			return target{}, err
		}
		name := ctxName
		if name == "" {
			name = c.CurrentContext
		}
		if name != "" {
			ctx, ok := c.find(name)
			if !ok {
				if ctxName == "" {
					return target{}, fmt.Errorf("the current context %q is not in %s: choose another with `ebb config use-context NAME`", name, path)
				}
				return target{}, missingContext(path, name)
			}
			t = target{server: ctx.Server, token: ctx.Token, caFile: ctx.CAFile, from: fmt.Sprintf("context %q (%s)", name, path)}
		}
	}
	switch {
	case server != "":
		t.server, t.from = server, "--server"
	case t.server != "":
	case os.Getenv(serverEnv) != "":
		t.server, t.from = os.Getenv(serverEnv), "$"+serverEnv
	default:
		t.server, t.from = defaultServer, "the default"
	}
	s, err := normalizeServer(t.server)
	if err != nil {
		return target{}, fmt.Errorf("%v (from %s)", err, t.from)
	}
	t.server = s
	if ca := cmp.Or(flagString(cmd, "ca-file"), os.Getenv(caFileEnv)); ca != "" {
		t.caFile = ca
	}
	t.token, t.tokenFrom = resolveToken(flagString(cmd, "token"), t)
	return t, nil
}

// serverURL returns the server cmd talks to (defaultServer when the
// choice is broken; running the command reports why).
func serverURL(cmd *cobra.Command) string {
	t, err := targetOf(cmd)
	if err != nil {
		return defaultServer
	}
	return t.server
}

func targetOf(cmd *cobra.Command) (target, error) {
	if ctx := cmd.Context(); ctx != nil {
		if t, ok := ctx.Value(targetKey{}).(target); ok {
			return t, nil
		}
	}
	return resolveTarget(cmd)
}

// newAPIClient returns a client for the server cmd talks to, with its
// context's token.
func newAPIClient(cmd *cobra.Command) *apiclient.Client {
	t, err := targetOf(cmd)
	if err != nil {
		t = target{server: defaultServer} // PersistentPreRunE reported it
	}
	cfg, err := clientTLS(t.caFile, "", "")
	if err != nil {
		// An unreadable CA file fails the request, saying why.
		return apiclient.New(t.server, &http.Client{Transport: failingTransport{err}}).WithToken(t.token)
	}
	return apiclient.New(t.server, &http.Client{Transport: clientTransport(cfg)}).WithToken(t.token)
}

// Output formats for -o.
const (
	outputTable = "table"
	outputWide  = "wide" // a table with more columns, where a command has them
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// addOutputFlag adds -o/--output to cmd, stored in *format.
func addOutputFlag(cmd *cobra.Command, format *string) {
	cmd.PersistentFlags().StringVarP(format, "output", "o", outputTable, "output format: table, json or yaml (wide where a command has it)")
}

// checkOutput reports an unknown -o value before any request is sent.
func checkOutput(format string) error {
	switch format {
	case outputTable, outputJSON, outputYAML:
		return nil
	}
	return fmt.Errorf("unknown output format %q: use -o table, -o json or -o yaml", format)
}

// checkOutputWide is checkOutput for commands that also print -o wide.
func checkOutputWide(format string) error {
	if format == outputWide {
		return nil
	}
	if err := checkOutput(format); err != nil {
		return fmt.Errorf("unknown output format %q: use -o table, -o wide, -o json or -o yaml", format)
	}
	return nil
}

// writeOutput writes v to w as JSON or YAML, or calls table for the table
// format.
func writeOutput(w io.Writer, format string, v any, table func(io.Writer) error) error {
	switch format {
	case outputJSON:
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case outputYAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case outputTable, outputWide:
		return table(w)
	}
	return checkOutput(format)
}

// age formats the time from t to now the way kubectl does: 45s, 3m20s,
// 5h, 2d4h.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}

// humanBytes formats a size for people: 512 B, 1.2 kB, 3.4 MB.
func humanBytes(n int64) string {
	return humanize.Bytes(uint64(max(n, 0)))
}
