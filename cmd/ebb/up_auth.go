package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/gateway"
)

// upAuth is how `ebb up` guards its listeners:
//
//   - the admin API (/v1) always checks Host and Origin (DNS rebinding,
//     cross-site requests), and needs a token with the route's scope
//     unless --auth=off;
//   - inference (REST on --addr, gRPC on --grpc-addr) needs predict:NAME
//     on a non-loopback address, and is open on loopback, where only this
//     machine can reach it;
//   - /metrics needs read on a non-loopback address, open on loopback;
//   - with --oidc-issuer, OIDC JWTs are accepted wherever ebb tokens are,
//     their groups mapped to scopes by --oidc-scope-map (auth.OIDCFlags).
//
// On first start it creates an admin token and writes it to
// DATA-DIR/admin.token (mode 0600), where the CLI finds it for a local
// server (see resolveToken).
type upAuth struct {
	off       bool
	verifier  *auth.Verifier
	authn     auth.Authenticator // verifier, and OIDC when configured
	addrLocal bool               // --addr is loopback
	extra     []string
	hosts     atomic.Pointer[auth.Hosts] // set by listening, before serving
	tokenPath string
}

// newUpAuth checks the auth flags and makes sure the admin token exists.
func newUpAuth(ctx context.Context, o upOptions, st auth.TokenStore, log *slog.Logger) (*upAuth, error) {
	a := &upAuth{addrLocal: auth.IsLoopback(o.addr), extra: o.allowedHosts}
	switch o.authMode {
	case "on", "":
	case "off":
		a.off = true
	default:
		return nil, fmt.Errorf("invalid --auth %q: use on (the default) or off", o.authMode)
	}
	a.verifier = auth.NewVerifier(st, 0, nil)
	oidc, err := o.oidc.Authenticator(ctx, a.off, log)
	if err != nil {
		return nil, err
	}
	byFormat := auth.ByFormat{Token: a.verifier}
	if oidc != nil {
		byFormat.JWT = oidc
		go oidc.Run(ctx) // refetches the issuer's keys hourly until ebb stops
	}
	a.authn = byFormat
	a.hosts.Store(auth.NewHosts(o.addr, o.allowedHosts))
	if err := os.MkdirAll(o.dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	a.tokenPath = filepath.Join(o.dataDir, adminTokenFile)
	created, err := ensureAdminToken(ctx, st, a.verifier, a.tokenPath)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created an admin token", "file", a.tokenPath)
	}
	grpcLocal := o.grpcAddr == "" || auth.IsLoopback(o.grpcAddr)
	switch {
	case a.off:
		log.Warn("AUTH IS OFF (--auth=off): anyone who can reach " + o.addr + " may deploy and run code as this user, push models and call inference; turn it on unless a proxy in front authenticates every request")
	case a.addrLocal && grpcLocal:
		log.Info("auth: the admin API (/v1) needs a token (the CLI finds "+a.tokenPath+" for this server); inference and /metrics are open on loopback, to this machine only",
			"adminToken", a.tokenPath)
	default:
		log.Info("auth: every request needs a token: the admin API by scope, inference with predict:NAME on a non-loopback address, /metrics with read on a non-loopback address",
			"adminToken", a.tokenPath, "restOpen", a.addrLocal, "grpcOpen", grpcLocal)
	}
	return a, nil
}

// listening sets the Host check for the address the server bound (its
// real port when --addr asked for port 0). Call it before serving.
func (a *upAuth) listening(bound string) {
	a.hosts.Store(auth.NewHosts(bound, a.extra))
}

// admin returns the admin API behind the Host/Origin check and, unless
// auth is off, token authorization; revoked tokens are forgotten at once.
func (a *upAuth) admin(h *api.Handler) http.Handler {
	var next http.Handler = h
	if !a.off {
		next = api.Authorize(h, a.authn)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hosts.Load().Handler(next).ServeHTTP(w, r)
	})
}

// metrics returns /metrics, needing read on a non-loopback address.
func (a *upAuth) metrics(h http.Handler) http.Handler {
	if a.off || a.addrLocal {
		return h
	}
	return auth.Require(a.authn, auth.Read, h)
}

// inference returns the gateway's authenticator for a listener on addr:
// nil (open) on loopback or with auth off.
func (a *upAuth) inference(addr string) gateway.Authenticator {
	if a.off || auth.IsLoopback(addr) {
		return nil
	}
	return a.authn
}

// ensureAdminToken keeps the admin token in path working: when the file
// holds a token the store still knows with scope admin, nothing changes;
// otherwise (first start, a revoked token, a new store) it creates an
// admin token and writes it to path with mode 0600. It reports whether it
// created one.
func ensureAdminToken(ctx context.Context, st auth.TokenStore, v *auth.Verifier, path string) (bool, error) {
	if b, err := os.ReadFile(path); err == nil {
		p, err := v.Authenticate(ctx, strings.TrimSpace(string(b)))
		if err == nil && p.HasScope(auth.ScopeAdmin) {
			return false, nil
		}
		if err != nil && !errors.Is(err, auth.ErrUnauthenticated) {
			return false, fmt.Errorf("check the admin token in %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("read the admin token: %w", err)
	}
	secret, tok, err := auth.NewToken()
	if err != nil {
		return false, err
	}
	tok.Name, tok.Scopes, tok.CreatedBy = "admin (ebb up)", []string{auth.ScopeAdmin}, "ebb up"
	if err := st.CreateToken(ctx, tok); err != nil {
		return false, fmt.Errorf("create the admin token: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".admin.token-*")
	if err != nil {
		return false, fmt.Errorf("write the admin token: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write the admin token: %w", err)
	}
	if _, err := tmp.WriteString(secret + "\n"); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write the admin token: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("write the admin token: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("write the admin token: %w", err)
	}
	return true, nil
}

// demoHints returns what the demo's printed commands need to carry a token:
// a curl header for inference and /metrics (none on loopback, where they
// are open), and an environment prefix for the CLI (EBB_DATA_DIR when the
// data dir is not the default, so the CLI finds the admin token; the
// token itself when the server is not on loopback).
func (a *upAuth) demoHints(dataDir string) (curlAuth, cliEnv string) {
	if a.off {
		return "", ""
	}
	tokenFile := a.tokenPath
	if abs, err := filepath.Abs(tokenFile); err == nil {
		tokenFile = abs
	}
	if !a.addrLocal {
		return fmt.Sprintf(` -H "Authorization: Bearer $(cat %s)"`, tokenFile), fmt.Sprintf("EBB_TOKEN=$(cat %s) ", tokenFile)
	}
	if filepath.Clean(dataDir) != defaultDataDir {
		return "", fmt.Sprintf("EBB_DATA_DIR=%s ", filepath.Dir(tokenFile))
	}
	return "", ""
}
