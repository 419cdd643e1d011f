package main

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/spf13/pflag"

	"github.com/ebb-ml/ebb/internal/auth"
)

// The values of --metrics-auth.
const (
	// metricsAuthToken: /metrics needs a token with scope read (or one
	// that includes it: deploy, models:write, admin), as ebb up's /metrics
	// does on a non-loopback address. The default: in a cluster, everything
	// needs a token unless auth is turned off.
	metricsAuthToken = "token"
	// metricsAuthOpen: anyone who reaches the port may scrape /metrics.
	metricsAuthOpen = "open"
)

// addMetricsAuthFlag adds --metrics-auth to a command serving /metrics.
func addMetricsAuthFlag(f *pflag.FlagSet, mode *string) {
	f.StringVar(mode, "metrics-auth", metricsAuthToken, "who may read /metrics: token (a token with scope read, or deploy, models:write or admin, which include it; an OIDC JWT mapped to one with --oidc-issuer), or open (anyone who reaches the port: for a scraper that cannot send a token, behind a network policy); --auth=off opens it too")
}

// checkMetricsAuth reports whether mode is a value of --metrics-auth.
func checkMetricsAuth(mode string) error {
	switch mode {
	case metricsAuthToken, metricsAuthOpen:
		return nil
	}
	return fmt.Errorf("invalid --metrics-auth %q: use token (the default: a token with scope read) or open", mode)
}

// metricsHandler returns h, the /metrics handler, behind what
// --metrics-auth asks: with token, a request needs a token that authn
// verifies with scope read (401 without one, 403 with one that lacks it);
// with open, or with authn nil (--auth=off), anyone may read it. It logs
// which applies.
func metricsHandler(mode string, authn auth.Authenticator, h http.Handler, log *slog.Logger) (http.Handler, error) {
	if err := checkMetricsAuth(mode); err != nil {
		return nil, err
	}
	switch {
	case authn == nil:
		log.Info("/metrics is open: auth is off (--auth=off)")
		return h, nil
	case mode == metricsAuthOpen:
		log.Warn("/metrics is open (--metrics-auth=open): anyone who reaches this port may read it; keep it behind a network policy")
		return h, nil
	}
	log.Info("/metrics needs a token with scope read (--metrics-auth=token)")
	return auth.Require(authn, auth.Read, h), nil
}
