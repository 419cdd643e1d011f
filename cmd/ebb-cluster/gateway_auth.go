package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/operator"
)

// gatewayTokenEnv names the environment variable that may hold the
// gateway's own token (scope gateway) when no --token-file is given.
const gatewayTokenEnv = "EBB_GATEWAY_TOKEN"

// tokenReloadEvery is how often a gateway rereads its --token-file.
const tokenReloadEvery = 2 * time.Second

// gatewayToken is the token a gateway sends the operator: the content of
// --token-file, reread when the file changes (the Helm chart mounts the
// Secret the operator keeps, so a rotated token is used without a
// restart), else $EBB_GATEWAY_TOKEN, fixed for the process's life.
type gatewayToken struct {
	file string
	log  *slog.Logger
	cur  atomic.Pointer[string]
}

// newGatewayToken reads the token once: from file when given (a missing or
// empty file is an error), else from $EBB_GATEWAY_TOKEN (empty is fine:
// the caller decides whether a token is needed).
func newGatewayToken(file string, log *slog.Logger) (*gatewayToken, error) {
	g := &gatewayToken{file: file, log: log}
	tok := strings.TrimSpace(os.Getenv(gatewayTokenEnv))
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		if tok = strings.TrimSpace(string(b)); tok == "" {
			return nil, fmt.Errorf("--token-file %s is empty: it must hold the gateway token the operator keeps in its gateway Secret", file)
		}
	}
	g.cur.Store(&tok)
	return g, nil
}

// get returns the token in use ("" for none).
func (g *gatewayToken) get() string { return *g.cur.Load() }

// reload rereads the file; it reports whether the token changed. An
// unreadable or empty file keeps the token in use (a Secret being
// rewritten) and is an error.
func (g *gatewayToken) reload() (bool, error) {
	if g.file == "" {
		return false, nil
	}
	b, err := os.ReadFile(g.file)
	if err != nil {
		return false, err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return false, fmt.Errorf("%s is empty", g.file)
	}
	if tok == g.get() {
		return false, nil
	}
	g.cur.Store(&tok)
	return true, nil
}

// run rereads the file every tokenReloadEvery until ctx ends.
func (g *gatewayToken) run(ctx context.Context) {
	if g.file == "" {
		return
	}
	t := time.NewTicker(tokenReloadEvery)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := g.reload()
		switch {
		case err != nil && !failing:
			g.log.Warn("cannot reread the gateway token: still using the previous one", "file", g.file, "err", err)
		case changed:
			g.log.Info("gateway token reloaded", "file", g.file)
		}
		failing = err != nil
	}
}

// tokenTransport sends every request with the gateway's current token as
// its bearer token, whatever Authorization the caller set: the operator
// client's requests (demand reports, wake-ups, token verification), never
// the admin API's, which carry the user's token.
type tokenTransport struct {
	base  http.RoundTripper
	token func() string
}

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tok := t.token()
	if tok == "" {
		return t.base.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return t.base.RoundTrip(r)
}

// gatewayAuth returns the inference authenticator of `ebb gateway`: nil
// with auth off; else ebb tokens verified by the operator at its
// TokenVerifyPath (remembered for a few seconds), and with --oidc-issuer
// OIDC JWTs verified here against the issuer's keys, as ebb up does. hc is
// the operator client, which sends the gateway's own token (tokenTransport);
// token is that token, required with auth on.
func gatewayAuth(ctx context.Context, mode, operatorURL string, hc *http.Client, token string, oidc auth.OIDCFlags, log *slog.Logger) (gateway.Authenticator, *auth.OIDC, error) {
	switch mode {
	case "on", "":
	case "off":
		if _, err := oidc.Authenticator(ctx, true, log); err != nil {
			return nil, nil, err
		}
		log.Warn("AUTH IS OFF (--auth=off): inference and /metrics are open to anyone who can reach this gateway; turn it on unless a proxy in front authenticates every request")
		return nil, nil, nil
	default:
		return nil, nil, fmt.Errorf("invalid --auth %q: use on (the default) or off", mode)
	}
	if token == "" {
		return nil, nil, errors.New("auth is on and the gateway has no token: give --token-file (the Helm chart mounts the gateway Secret the operator keeps) or $" + gatewayTokenEnv + ", or run with --auth=off beside an operator with --auth=off")
	}
	remote := auth.NewRemote(strings.TrimRight(operatorURL, "/")+operator.TokenVerifyPath, "", auth.RemoteOptions{Client: hc})
	jwt, err := oidc.Authenticator(ctx, false, log)
	if err != nil {
		return nil, nil, err
	}
	if jwt == nil {
		log.Info("auth: inference needs a token with predict:NAME (verified by the operator, cached); no OIDC issuer (--oidc-issuer)")
		return remote, nil, nil
	}
	log.Info("auth: inference needs a token with predict:NAME: ebb tokens verified by the operator (cached), OIDC JWTs verified here")
	return auth.ByFormat{Token: remote, JWT: jwt}, jwt, nil
}
