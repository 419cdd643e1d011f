package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/apiclient"
)

// versionOutput is what `ebb version -o json` prints.
type versionOutput struct {
	Client buildStamp `json:"client"`
	// Server is nil when the server cannot be asked; ServerError says why.
	Server      *serverVersion `json:"server,omitempty"`
	ServerError string         `json:"serverError,omitempty"`
}

type serverVersion struct {
	api.VersionInfo
	URL string `json:"url"`
}

func newVersionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of this ebb, its commit and engines, and, when it answers, the server's version",
		Long: `Print this ebb's build stamp: its version and the commit it was built
from (set with -ldflags, or recorded by go build and go install in a clone;
"dev" and no commit under go run), the Go version, and the engines compiled
in (onnx needs a build with cgo and the ONNX Runtime library); then the
version of the server it talks to, when it answers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			out := versionOutput{Client: currentStamp()}
			c := newAPIClient(cmd)
			info, err := c.Version(cmd.Context())
			var ae *apiclient.Error
			switch {
			case err == nil:
				out.Server = &serverVersion{VersionInfo: info, URL: c.Server()}
			case errors.As(err, &ae) && ae.Code == "request/not_found":
				out.ServerError = fmt.Sprintf("the server at %s is an ebb older than GET /v1/version", c.Server())
			default:
				out.ServerError = err.Error()
			}
			return writeOutput(cmd.OutOrStdout(), output, out, func(w io.Writer) error {
				writeStamp(w, out.Client)
				if s := out.Server; s != nil {
					_, err := fmt.Fprintf(w, "Server: %s (%s) at %s\n", s.Version, homeText(s.Home), s.URL)
					return err
				}
				_, err := fmt.Fprintf(w, "Server: unknown: %s\n", out.ServerError)
				return err
			})
		},
	}
	addServerFlag(cmd)
	addOutputFlag(cmd, &output)
	return cmd
}

func homeText(home string) string {
	switch home {
	case api.HomeUp:
		return "ebb up"
	case api.HomeCluster:
		return "in a Kubernetes cluster"
	}
	return "home " + home
}

// writeStamp writes the Client and Engines lines of `ebb version`:
//
//	Client: v0.3.0 (go1.26.8, linux/amd64, commit 788743b1c2d3, modified)
//	Engines: trees, echo, python, http, onnx (ONNX Runtime at /usr/local/lib/...)
func writeStamp(w io.Writer, s buildStamp) {
	build := []string{s.GoVersion, s.Platform}
	if s.Commit != "" {
		build = append(build, "commit "+shortCommit(s.Commit))
		if s.Modified {
			build = append(build, "modified")
		}
	}
	fmt.Fprintf(w, "Client: %s (%s)\n", s.Version, strings.Join(build, ", "))
	names := make([]string, len(s.Engines))
	for i, e := range s.Engines {
		names[i] = e.Name
		if e.Note != "" && (!e.In || e.Name == "onnx") {
			names[i] += " (" + e.Note + ")"
		}
	}
	fmt.Fprintf(w, "Engines: %s\n", strings.Join(names, ", "))
}

// shortCommit abbreviates a full revision to 12 characters, as go's
// pseudo-versions do.
func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}
