package main

import (
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/apiclient"
)

// versionOutput is what `ebb version -o json` prints.
type versionOutput struct {
	Client clientVersion `json:"client"`
	// Server is nil when the server cannot be asked; ServerError says why.
	Server      *serverVersion `json:"server,omitempty"`
	ServerError string         `json:"serverError,omitempty"`
}

type clientVersion struct {
	Version   string `json:"version"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

type serverVersion struct {
	api.VersionInfo
	URL string `json:"url"`
}

func newVersionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of this ebb and, when it answers, of the server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			out := versionOutput{Client: clientVersion{Version: version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}}
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
				fmt.Fprintf(w, "Client: %s (%s, %s)\n", out.Client.Version, out.Client.GoVersion, out.Client.Platform)
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
