// Package ui serves ebb's web dashboard at /ui/: a single page of static
// HTML, JavaScript and CSS embedded in the binary, with uPlot (from the
// npm registry, vendored by hack/ui-vendor.sh) for its charts.
//
// The assets carry no data, so they are served to anyone; every figure the
// page shows comes from the admin API (/v1) of the same origin, called
// with the bearer token the user types into the page (kept in the tab's
// sessionStorage), so the dashboard sees exactly what that token may read.
// The page runs no inline script or style: a strict Content-Security-Policy
// allows scripts, styles and API calls from its own origin only, and no
// framing.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed assets
var assets embed.FS

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

// ContentSecurityPolicy is sent with every asset: scripts, styles, images
// and API calls from the dashboard's own origin only; nothing inline, no
// plugins, no framing, no form posts elsewhere.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the dashboard under Prefix, and redirects /ui to it.
// Mount it on the server that serves the admin API, with
//
//	mux.Handle("/ui/", ui.Handler())
//	mux.Handle("/ui", ui.Handler())
func Handler() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix(Prefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "the dashboard's files are read-only: use GET", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path == strings.TrimSuffix(Prefix, "/") {
			http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
			return
		}
		// The page and its scripts change with the binary: revalidate
		// (the embedded files have no modification time, so no ETag
		// either; they are small).
		h.Set("Cache-Control", "no-cache")
		if strings.HasSuffix(r.URL.Path, "/") && r.URL.Path != Prefix {
			http.NotFound(w, r) // no directory listings
			return
		}
		files.ServeHTTP(w, r)
	})
}
