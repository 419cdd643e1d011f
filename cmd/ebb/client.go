package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/ebb-ml/ebb/internal/apiclient"
)

// defaultServer is the admin API address `ebb up` listens on by default.
const defaultServer = "http://127.0.0.1:8080"

// serverEnv names the environment variable that overrides defaultServer.
const serverEnv = "EBB_SERVER"

// addServerFlag adds the persistent --server flag to a command that talks
// to a running ebb.
func addServerFlag(cmd *cobra.Command) {
	cmd.PersistentFlags().String("server", "",
		fmt.Sprintf("URL of the ebb server (default $%s, else %s)", serverEnv, defaultServer))
}

// serverURL returns the server to talk to: --server, else $EBB_SERVER, else
// defaultServer. A bare host:port gets http://.
func serverURL(cmd *cobra.Command) string {
	s, _ := cmd.Flags().GetString("server")
	if s == "" {
		s = os.Getenv(serverEnv)
	}
	if s == "" {
		s = defaultServer
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	return s
}

// newAPIClient returns a client for the server cmd's flags name.
func newAPIClient(cmd *cobra.Command) *apiclient.Client {
	return apiclient.New(serverURL(cmd), &http.Client{})
}

// Output formats for -o.
const (
	outputTable = "table"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// addOutputFlag adds -o/--output to cmd, stored in *format.
func addOutputFlag(cmd *cobra.Command, format *string) {
	cmd.PersistentFlags().StringVarP(format, "output", "o", outputTable, "output format: table, json or yaml")
}

// checkOutput reports an unknown -o value before any request is sent.
func checkOutput(format string) error {
	switch format {
	case outputTable, outputJSON, outputYAML:
		return nil
	}
	return fmt.Errorf("unknown output format %q: use -o table, -o json or -o yaml", format)
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
	case outputTable:
		return table(w)
	}
	return checkOutput(format)
}

// age formats the time from t to now the way kubectl does: 45s, 3m, 5h, 2d.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}
