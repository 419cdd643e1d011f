package queue

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Callbacks. A request may name a URL that its result is posted to. The
// URL's host must be on an allow-list, checked when the request is
// submitted and again before every attempt (the list may have shrunk since);
// the list defaults to empty, which allows no callbacks at all.
//
// The post carries the result as GET /v2/async/{id} returns it: the body
// passed through with its Content-Type, and headers
//
//	Ebb-Async-Id: <id>
//	Ebb-Result-Status: <the status the chain answered>
//	Ebb-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
//
// where v1 is HMAC-SHA256, keyed with the configured secret, of
//
//	<t> "." <id> "." <status> "." <body>
//
// so the id and the status are signed with the body. A receiver recomputes
// v1, compares in constant time, and refuses a t too far from its clock
// (replays). A callback may be delivered more than once (a worker that
// crashed after posting, before recording it): receivers deduplicate by
// Ebb-Async-Id.

// Header names of a callback post.
const (
	HeaderID        = "Ebb-Async-Id"
	HeaderStatus    = "Ebb-Result-Status"
	HeaderSignature = "Ebb-Signature"
)

// ErrCallbackNotAllowed is wrapped by CallbackAllowed's error.
var ErrCallbackNotAllowed = errors.New("callback URL not allowed")

// CallbackAllowed returns nil when raw is an absolute http or https URL
// whose host matches an entry of allow: a host name or IP ("hooks.example"),
// optionally with a port ("hooks.example:8443": only that port), or
// "*.example" (any host under example, not example itself). Host names
// compare case-insensitively. An empty allow allows nothing.
func CallbackAllowed(allow []string, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCallbackNotAllowed, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: %q is not an http or https URL", ErrCallbackNotAllowed, raw)
	}
	if u.User != nil {
		return fmt.Errorf("%w: a callback URL may not carry credentials", ErrCallbackNotAllowed)
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return fmt.Errorf("%w: %q has no host", ErrCallbackNotAllowed, raw)
	}
	port := u.Port()
	for _, a := range allow {
		a = strings.ToLower(strings.TrimSpace(a))
		ahost, aport := a, ""
		if h, p, err := net.SplitHostPort(a); err == nil {
			ahost, aport = h, p
		}
		if aport != "" && aport != port {
			continue
		}
		if suffix, ok := strings.CutPrefix(ahost, "*."); ok {
			if strings.HasSuffix(host, "."+suffix) {
				return nil
			}
			continue
		}
		if ahost == host {
			return nil
		}
	}
	if len(allow) == 0 {
		return fmt.Errorf("%w: no callback hosts are allowed (the allow-list is empty)", ErrCallbackNotAllowed)
	}
	return fmt.Errorf("%w: host %q is not on the allow-list (%s)", ErrCallbackNotAllowed, host, strings.Join(allow, ", "))
}

// Sign returns the Ebb-Signature header value of a callback of request id
// with status and body, at t.
func Sign(secret []byte, t time.Time, id string, status int, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, id, status, body))
}

func mac(secret []byte, ts, id string, status int, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "." + id + "." + strconv.Itoa(status) + "."))
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a callback's Ebb-Signature header against the secret, and
// that its timestamp is within tolerance of now. It is what a receiver
// written in Go runs (docs/async.md shows it).
func Verify(secret []byte, header, id string, status int, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("signature has no timestamp")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("signature timestamp is %v from now, beyond %v", d.Round(time.Second), tolerance)
	}
	want := mac(secret, ts, id, status, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return errors.New("signature does not match")
}
