package kubetest

import (
	"context"
	"net"
	"os"
	"regexp"
	"strings"
)

// rewriter adapts a container's arguments and environment values to a
// process that runs on this machine, without a mount namespace, a network
// namespace or cluster DNS (the package doc states the rules).
type rewriter struct {
	ns       string
	podIP    string
	mounts   []mount // longest mount path first
	services *serviceProxy
}

// args rewrites a command line: listen addresses, then every value.
func (r *rewriter) args(ctx context.Context, argv []string) []string {
	out := append([]string{}, argv...)
	for i := 1; i < len(out); i++ {
		a := out[i]
		name, val, hasVal := strings.Cut(a, "=")
		if !isAddrFlag(name) {
			continue
		}
		if hasVal {
			out[i] = name + "=" + r.bindAddr(val)
		} else if i+1 < len(out) && !strings.HasPrefix(out[i+1], "-") {
			out[i+1] = r.bindAddr(out[i+1])
			i++
		}
	}
	for i := 1; i < len(out); i++ {
		out[i] = r.value(ctx, out[i])
	}
	return out
}

// isAddrFlag reports whether a flag names a listen address: --addr,
// --grpc-addr, --metrics-addr ...
func isAddrFlag(name string) bool {
	return strings.HasPrefix(name, "--") && (name == "--addr" || strings.HasSuffix(name, "-addr"))
}

// bindAddr turns an address that listens on every interface (":P",
// "0.0.0.0:P", "[::]:P") into the pod IP's.
func (r *rewriter) bindAddr(v string) string {
	host, port, err := net.SplitHostPort(v)
	if err != nil || (host != "" && host != "0.0.0.0" && host != "::") {
		return v
	}
	return net.JoinHostPort(r.podIP, port)
}

// value rewrites one argument or environment value: mount paths to their
// local directories, then Service host names to the service proxy's
// addresses (ctx bounds the Service lookups).
func (r *rewriter) value(ctx context.Context, s string) string {
	return r.hosts(ctx, r.paths(s))
}

// paths rewrites a path under a mount, a file:// URL of one, or the value
// of a --flag=PATH.
func (r *rewriter) paths(s string) string {
	if p, ok := r.path(s); ok {
		return p
	}
	if rest, ok := strings.CutPrefix(s, "file://"); ok {
		if p, ok := r.path(rest); ok {
			return "file://" + p
		}
	}
	if strings.HasPrefix(s, "-") {
		if name, val, ok := strings.Cut(s, "="); ok {
			return name + "=" + r.paths(val)
		}
	}
	return s
}

// path maps a container path under a mount to the local one. A path below
// a mount that already exists on this machine (a test's own file under
// /tmp, where the chart mounts an emptyDir) is left alone.
func (r *rewriter) path(s string) (string, bool) {
	for _, m := range r.mounts {
		if m.path == "/" {
			continue
		}
		if s == m.path {
			return m.dir, true
		}
		if rest, ok := strings.CutPrefix(s, m.path+"/"); ok {
			if _, err := os.Stat(s); err == nil {
				return s, false
			}
			return m.dir + "/" + rest, true
		}
	}
	return s, false
}

// serviceHost matches NAME.NAMESPACE.svc and NAME.NAMESPACE.svc.cluster.local.
var serviceHost = regexp.MustCompile(`([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc(\.cluster\.local)?`)

// urlHost matches the host of a URL: scheme://HOST.
var urlHost = regexp.MustCompile(`[a-zA-Z][-+.a-zA-Z0-9]*://([-.a-z0-9]+)`)

func hostChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_'
}

// hosts rewrites Service host names to the addresses of the service proxy:
// NAME.NS.svc[.cluster.local] anywhere (as a whole host name), and NAME or
// NAME.NS as the host of a URL when such a Service exists.
func (r *rewriter) hosts(ctx context.Context, s string) string {
	if r.services == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range serviceHost.FindAllStringSubmatchIndex(s, -1) {
		start, end := m[0], m[1]
		if start > 0 && hostChar(s[start-1]) || end < len(s) && hostChar(s[end]) && s[end] != '.' {
			continue
		}
		if end < len(s) && s[end] == '.' && end+1 < len(s) && hostChar(s[end+1]) {
			continue // a longer name: x.y.svc.example.com
		}
		name, ns := s[m[2]:m[3]], s[m[6]:m[7]]
		b.WriteString(s[last:start])
		b.WriteString(r.services.addr(ns, name).String())
		last = end
	}
	b.WriteString(s[last:])
	s = b.String()

	b.Reset()
	last = 0
	for _, m := range urlHost.FindAllStringSubmatchIndex(s, -1) {
		start, end := m[2], m[3]
		if end < len(s) && !strings.ContainsRune(":/?#", rune(s[end])) {
			continue // an odd host
		}
		if authority, _, _ := strings.Cut(s[start:], "/"); strings.Contains(authority, "@") {
			continue // user info, not the host
		}
		name, ns, dotted := strings.Cut(s[start:end], ".")
		if !dotted {
			ns = r.ns
		}
		if strings.Contains(ns, ".") || net.ParseIP(s[start:end]) != nil || !r.services.exists(ctx, ns, name) {
			continue
		}
		b.WriteString(s[last:start])
		b.WriteString(r.services.addr(ns, name).String())
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}
