package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// configEnv names the environment variable that overrides the config
// file's path.
const configEnv = "EBB_CONFIG"

// clientConfig is the CLI's config file: named contexts, each a server and
// its credentials, and the one in use, the way a kubeconfig holds them.
//
//	current-context: prod
//	contexts:
//	- name: prod
//	  server: https://ebb.example.com
//	  token: s3cr3t
//	- name: local
//	  server: http://127.0.0.1:8080
type clientConfig struct {
	CurrentContext string          `json:"current-context,omitempty"`
	Contexts       []clientContext `json:"contexts"`
}

// clientContext is one named server.
type clientContext struct {
	Name   string `json:"name"`
	Server string `json:"server"`
	// Token, when set, is sent as "Authorization: Bearer TOKEN".
	Token string `json:"token,omitempty"`
	// CAFile, when set, is a PEM file of a CA to trust for an https
	// server signed by a private CA.
	CAFile string `json:"ca-file,omitempty"`
}

func (c *clientConfig) find(name string) (*clientContext, bool) {
	for i := range c.Contexts {
		if c.Contexts[i].Name == name {
			return &c.Contexts[i], true
		}
	}
	return nil, false
}

// configPath returns $EBB_CONFIG, else config.yaml in the user's config
// directory (~/.config/ebb/config.yaml on Linux).
func configPath() (string, error) {
	if p := os.Getenv(configEnv); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("cannot find the ebb config file: %v; set $%s to its path", err, configEnv)
	}
	return filepath.Join(dir, "ebb", "config.yaml"), nil
}

// loadConfig reads the config file at path; a missing file is an empty
// config.
func loadConfig(path string) (*clientConfig, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &clientConfig{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ebb config %s: %w", path, err)
	}
	var c clientConfig
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("ebb config %s is not valid: %v: fix the file, or remove it and add contexts again with `ebb config set-context`", path, err)
	}
	seen := map[string]bool{}
	for _, ctx := range c.Contexts {
		if seen[ctx.Name] {
			return nil, fmt.Errorf("ebb config %s names context %q twice: remove one", path, ctx.Name)
		}
		seen[ctx.Name] = true
	}
	return &c, nil
}

// saveConfig writes c to path atomically (a temporary file renamed over
// it), readable by the user only: it may hold tokens.
func saveConfig(path string, c *clientConfig) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create the directory of ebb config %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, ".config-*.tmp")
	if err != nil {
		return fmt.Errorf("write ebb config %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write ebb config %s: %w", path, err)
	}
	return nil
}

// normalizeServer checks a server URL and gives a bare host:port http://.
func normalizeServer(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("server %q must be a URL such as https://ebb.example.com or http://127.0.0.1:8080", s)
	}
	return strings.TrimRight(s, "/"), nil
}

func validContextName(name string) error {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' }) {
		return fmt.Errorf("context name %q must be non-empty and hold no spaces", name)
	}
	return nil
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Manage contexts: named ebb servers to talk to, like kubectl's",
		Long: `Manage the contexts in the ebb config file ($EBB_CONFIG, else
~/.config/ebb/config.yaml): named ebb servers, each with an optional token,
and the one in use.

Every command that talks to a server picks it in this order: --server,
--context, $EBB_SERVER, the current context, http://127.0.0.1:8080.`,
		Example: `  ebb config set-context prod --server https://ebb.example.com --token $EBB_TOKEN
  ebb config use-context prod
  ebb get deployments                 # on prod
  ebb get deployments --context local`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newSetContextCmd(), newUseContextCmd(), newGetContextsCmd(), newCurrentContextCmd(), newDeleteContextCmd())
	return cmd
}

// editConfig loads the config file, lets fn change it and saves it.
func editConfig(fn func(path string, c *clientConfig) error) error {
	path, err := configPath()
	if err != nil {
		return err
	}
	c, err := loadConfig(path)
	if err != nil {
		return err
	}
	if err := fn(path, c); err != nil {
		return err
	}
	return saveConfig(path, c)
}

func missingContext(path, name string) error {
	return fmt.Errorf("no context %q in %s: list contexts with `ebb config get-contexts`, or add it with `ebb config set-context %s --server URL`", name, path, name)
}

func newSetContextCmd() *cobra.Command {
	var server, token, caFile string
	cmd := &cobra.Command{
		Use:   "set-context NAME --server URL [--token TOKEN] [--ca-file FILE]",
		Short: "Add a context, or change its server or token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := validContextName(name); err != nil {
				return err
			}
			verb := "modified"
			err := editConfig(func(path string, c *clientConfig) error {
				ctx, ok := c.find(name)
				if !ok {
					if server == "" {
						return fmt.Errorf("context %q is new: give its server with --server URL", name)
					}
					c.Contexts = append(c.Contexts, clientContext{Name: name})
					ctx, verb = &c.Contexts[len(c.Contexts)-1], "created"
				}
				if server != "" {
					s, err := normalizeServer(server)
					if err != nil {
						return err
					}
					ctx.Server = s
				}
				if cmd.Flags().Changed("token") {
					ctx.Token = token
				}
				if cmd.Flags().Changed("ca-file") {
					ctx.CAFile = caFile
					if caFile != "" {
						abs, err := filepath.Abs(caFile)
						if err != nil {
							return err
						}
						ctx.CAFile = abs
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Context %q %s.\n", name, verb)
			return err
		},
	}
	cmd.Flags().StringVar(&server, "server", "", "URL of the ebb server (admin API), such as https://ebb.example.com")
	cmd.Flags().StringVar(&token, "token", "", `bearer token sent to the server ("" removes it)`)
	cmd.Flags().StringVar(&caFile, "ca-file", "", `PEM file of a CA to trust for the server besides the system's ("" removes it)`)
	return cmd
}

func newUseContextCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "use-context NAME",
		Short: "Talk to the server of context NAME from now on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			err := editConfig(func(path string, c *clientConfig) error {
				if _, ok := c.find(name); !ok {
					return missingContext(path, name)
				}
				c.CurrentContext = name
				return nil
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Switched to context %q.\n", name)
			return err
		},
	}
}

// contextView is a context as get-contexts shows it: the token redacted.
type contextView struct {
	Name    string `json:"name"`
	Server  string `json:"server"`
	Token   string `json:"token,omitempty"`
	Current bool   `json:"current"`
}

func newGetContextsCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get-contexts",
		Short: "List the contexts; * marks the current one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			path, err := configPath()
			if err != nil {
				return err
			}
			c, err := loadConfig(path)
			if err != nil {
				return err
			}
			views := make([]contextView, 0, len(c.Contexts))
			for _, ctx := range c.Contexts {
				v := contextView{Name: ctx.Name, Server: ctx.Server, Current: ctx.Name == c.CurrentContext}
				if ctx.Token != "" {
					v.Token = "REDACTED"
				}
				views = append(views, v)
			}
			return writeOutput(cmd.OutOrStdout(), output, struct {
				Items []contextView `json:"items"`
			}{views}, func(w io.Writer) error {
				if len(views) == 0 {
					_, err := fmt.Fprintf(w, "No contexts in %s. Add one with `ebb config set-context NAME --server URL`.\n", path)
					return err
				}
				tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
				fmt.Fprintln(tw, "CURRENT\tNAME\tSERVER\tTOKEN")
				for _, v := range views {
					cur, tok := "", "-"
					if v.Current {
						cur = "*"
					}
					if v.Token != "" {
						tok = "set"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cur, v.Name, v.Server, tok)
				}
				return tw.Flush()
			})
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

func newCurrentContextCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "current-context",
		Short: "Print the name of the current context",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := configPath()
			if err != nil {
				return err
			}
			c, err := loadConfig(path)
			if err != nil {
				return err
			}
			if c.CurrentContext == "" {
				return fmt.Errorf("no current context in %s: choose one with `ebb config use-context NAME`", path)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), c.CurrentContext)
			return err
		},
	}
}

func newDeleteContextCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete-context NAME",
		Short: "Remove a context from the config file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			var file string
			wasCurrent := false
			err := editConfig(func(path string, c *clientConfig) error {
				file = path
				if _, ok := c.find(name); !ok {
					return missingContext(path, name)
				}
				kept := c.Contexts[:0]
				for _, ctx := range c.Contexts {
					if ctx.Name != name {
						kept = append(kept, ctx)
					}
				}
				c.Contexts = kept
				if c.CurrentContext == name {
					c.CurrentContext, wasCurrent = "", true
				}
				return nil
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Deleted context %q from %s.\n", name, file)
			if wasCurrent {
				_, err = fmt.Fprintln(w, "It was the current context: choose another with `ebb config use-context NAME`.")
			}
			return err
		},
	}
}
