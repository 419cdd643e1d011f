package main

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/ebb-ml/ebb/internal/auth"
)

// tokenEnv names the environment variable holding a token for one-off use.
const tokenEnv = "EBB_TOKEN"

// dataDirEnv names the data dir of a local `ebb up`, where the CLI looks
// for its admin token.
const dataDirEnv = "EBB_DATA_DIR"

// adminTokenFile is the file in `ebb up`'s data dir that holds the admin
// token it created on first start (mode 0600).
const adminTokenFile = "admin.token"

// defaultDataDir is `ebb up`'s default --data-dir.
const defaultDataDir = ".ebb"

// resolveToken picks the token the CLI sends to t.server, first found:
//
//  1. --token;
//  2. $EBB_TOKEN;
//  3. the context's token (t.token);
//  4. when the server is on a loopback address (a local `ebb up`), the
//     admin token in $EBB_DATA_DIR/admin.token, else in
//     ./.ebb/admin.token (ebb up's default data dir, relative to the
//     current directory).
//
// It returns "" when there is none, and where the token came from.
func resolveToken(flag string, t target) (token, from string) {
	switch {
	case flag != "":
		return flag, "--token"
	case os.Getenv(tokenEnv) != "":
		return os.Getenv(tokenEnv), "$" + tokenEnv
	case t.token != "":
		return t.token, t.from
	}
	if !loopbackServer(t.server) {
		return "", ""
	}
	dir := os.Getenv(dataDirEnv)
	if dir == "" {
		dir = defaultDataDir
	}
	path := filepath.Join(dir, adminTokenFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", ""
	}
	return strings.TrimSpace(string(b)), path
}

// loopbackServer reports whether a server URL names this machine.
func loopbackServer(server string) bool {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return false
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	return auth.IsLoopback(host)
}
