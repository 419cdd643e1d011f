package auth

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/ebb-ml/ebb/internal/store"
)

// BearerToken returns the token of an "Authorization: Bearer TOKEN" header
// value; ok is false when there is none.
func BearerToken(header string) (token string, ok bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// FromHeader authenticates the Authorization header value h with a.
func FromHeader(r *http.Request, a Authenticator) (Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Principal{}, Unauthenticated("no token")
	}
	tok, ok := BearerToken(h)
	if !ok {
		return Principal{}, Unauthenticated(`the Authorization header is not "Bearer TOKEN"`)
	}
	return a.Authenticate(r.Context(), tok)
}

// errorBody is the admin API's error shape.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// WriteError answers a refused request: 401 with WWW-Authenticate: Bearer
// (auth/unauthenticated), 403 (auth/forbidden), or 503 when the token
// store or the OIDC issuer cannot be reached; the body is the admin API's
// {"error":{"code":...,"message":...}}.
func WriteError(w http.ResponseWriter, err error) {
	status, code, msg := Status(err)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ebb"`)
	}
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(b)
}

// Status returns the HTTP status, code and message for an error of
// authentication or authorization.
func Status(err error) (status int, code, msg string) {
	var e *Error
	switch {
	case errors.Is(err, ErrIssuerUnavailable):
		return http.StatusServiceUnavailable, CodeIssuerUnavailable, "cannot check the token: " + err.Error()
	case errors.As(err, &e) && errors.Is(e, ErrForbidden):
		return http.StatusForbidden, e.Code, e.Message
	case errors.As(err, &e):
		return http.StatusUnauthorized, e.Code, e.Message
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, "store/unavailable", "cannot check the token: " + err.Error()
	}
	return http.StatusInternalServerError, "internal", "cannot check the token: see the ebb server log"
}

// Require returns a handler that serves next only for requests whose token
// allows action (on no particular resource).
func Require(a Authenticator, action Action, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := FromHeader(r, a)
		if err == nil {
			err = Check(p, action, "")
		}
		if err != nil {
			WriteError(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// IsLoopback reports whether a listen address ("127.0.0.1:8080",
// "localhost:8080", "[::1]:0") is reachable only from this machine. An
// address without a host (":8080") listens everywhere.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Hosts checks the Host and Origin headers of admin requests, which closes
// DNS rebinding (a page whose name resolves to 127.0.0.1 reaching a local
// admin API) and cross-site requests from browsers.
type Hosts struct {
	// allowed are host[:port] entries, lower case; an entry without a port
	// allows any port. Empty: any Host.
	allowed []string
}

// NewHosts returns the check for a server listening on addr (as given to
// net.Listen, and as bound: the actual port) with the extra allowed hosts.
// On a loopback address the Host must be that address, or localhost,
// 127.0.0.1 or [::1] at its port; on a specific address, that address; on
// all interfaces (":8080", "0.0.0.0:8080"), any Host unless extra names
// some. extra entries may omit the port.
func NewHosts(bound string, extra []string) *Hosts {
	h := &Hosts{}
	host, port, err := net.SplitHostPort(bound)
	if err == nil {
		ip := net.ParseIP(host)
		switch {
		case IsLoopback(bound):
			h.allowed = append(h.allowed, net.JoinHostPort("localhost", port), net.JoinHostPort("127.0.0.1", port), net.JoinHostPort("::1", port), strings.ToLower(bound))
		case ip != nil && ip.IsUnspecified(), host == "":
			if len(extra) == 0 {
				return h // any Host; tokens protect it
			}
		default:
			h.allowed = append(h.allowed, strings.ToLower(bound))
		}
	}
	for _, e := range extra {
		if e = strings.ToLower(strings.TrimSpace(e)); e != "" {
			h.allowed = append(h.allowed, e)
		}
	}
	return h
}

// Allowed reports whether host (a Host header) is allowed.
func (h *Hosts) Allowed(host string) bool {
	if len(h.allowed) == 0 {
		return true
	}
	host = strings.ToLower(host)
	name := host
	if n, _, err := net.SplitHostPort(host); err == nil {
		name = n
	}
	for _, a := range h.allowed {
		if a == host || a == name || "["+a+"]" == name {
			return true
		}
	}
	return false
}

// Handler refuses, with 403 request/host_not_allowed or
// request/origin_not_allowed, requests to next whose Host is not allowed or
// whose Origin (sent by browsers) is neither the request's own Host nor an
// allowed host.
func (h *Hosts) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.Allowed(r.Host) {
			writeRefusal(w, "request/host_not_allowed", "Host "+r.Host+" is not an address of this ebb server: use the address it listens on, or add the name to --allowed-hosts")
			return
		}
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			if err != nil || u.Host == "" || (!strings.EqualFold(u.Host, r.Host) && (len(h.allowed) == 0 || !h.Allowed(u.Host))) {
				writeRefusal(w, "request/origin_not_allowed", "Origin "+o+" may not call the admin API: cross-site requests are refused; add the site's host to --allowed-hosts to allow it")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func writeRefusal(w http.ResponseWriter, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusForbidden)
	_ = json.NewEncoder(w).Encode(b)
}
