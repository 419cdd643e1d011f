package ui_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/ui"
)

func serve(t *testing.T, method, path string) *http.Response {
	t.Helper()
	w := httptest.NewRecorder()
	ui.Handler().ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w.Result()
}

func TestAssets(t *testing.T) {
	tests := []struct {
		path, wantType string
		wantCode       int
	}{
		{"/ui/", "text/html", http.StatusOK},
		{"/ui/app.js", "text/javascript", http.StatusOK},
		{"/ui/style.css", "text/css", http.StatusOK},
		{"/ui/vendor/uPlot.iife.min.js", "text/javascript", http.StatusOK},
		{"/ui/vendor/uPlot.min.css", "text/css", http.StatusOK},
		{"/ui/vendor/", "", http.StatusNotFound},
		{"/ui/nope.js", "", http.StatusNotFound},
		{"/ui", "", http.StatusMovedPermanently},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp := serve(t, http.MethodGet, tt.path)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("GET %s = %d, want %d", tt.path, resp.StatusCode, tt.wantCode)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type %q, want %s", ct, tt.wantType)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); csp != ui.ContentSecurityPolicy {
				t.Errorf("Content-Security-Policy %q, want %q", csp, ui.ContentSecurityPolicy)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no X-Content-Type-Options: nosniff")
			}
		})
	}
	if resp := serve(t, http.MethodPost, "/ui/"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/ = %d, want 405", resp.StatusCode)
	}
}

// TestStrictCSP checks that the policy allows nothing inline and nothing
// from elsewhere, and that the page needs nothing of the kind: no inline
// script, handler or style, and every script and stylesheet it names is
// served.
func TestStrictCSP(t *testing.T) {
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "*", "http:", "https:", "data: ;"} {
		for _, d := range strings.Split(ui.ContentSecurityPolicy, ";") {
			d = strings.TrimSpace(d)
			if strings.HasPrefix(d, "script-src") || strings.HasPrefix(d, "style-src") || strings.HasPrefix(d, "connect-src") || strings.HasPrefix(d, "default-src") {
				if strings.Contains(d+" ;", bad) {
					t.Errorf("CSP directive %q allows %s", d, bad)
				}
			}
		}
	}
	resp := serve(t, http.MethodGet, "/ui/")
	b, _ := io.ReadAll(resp.Body)
	page := string(b)
	if m := regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]+</script>`).FindString(page); m != "" {
		t.Errorf("inline script in index.html: %s", m)
	}
	if m := regexp.MustCompile(`\son[a-z]+\s*=|\sstyle\s*=|<style`).FindString(page); m != "" {
		t.Errorf("inline handler or style in index.html: %q", m)
	}
	refs := regexp.MustCompile(`(?:src|href)="([^"#:]+\.(?:js|css))"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 4 {
		t.Fatalf("index.html names %d scripts and stylesheets, want uPlot's two, style.css and app.js", len(refs))
	}
	for _, r := range refs {
		if resp := serve(t, http.MethodGet, "/ui/"+r[1]); resp.StatusCode != http.StatusOK {
			t.Errorf("index.html names %s, which is %d", r[1], resp.StatusCode)
		}
	}
	// Modules import each other by relative path: each must exist.
	for _, js := range []string{"app.js", "deployments.js", "others.js", "charts.js", "api.js", "dom.js"} {
		resp := serve(t, http.MethodGet, "/ui/"+js)
		b, _ := io.ReadAll(resp.Body)
		for _, m := range regexp.MustCompile(`from '\./([^']+)'`).FindAllStringSubmatch(string(b), -1) {
			if r := serve(t, http.MethodGet, "/ui/"+m[1]); r.StatusCode != http.StatusOK {
				t.Errorf("%s imports %s, which is %d", js, m[1], r.StatusCode)
			}
		}
		if strings.Contains(string(b), "innerHTML") {
			t.Errorf("%s sets innerHTML: build elements with dom.js's h, which writes text", js)
		}
	}
}
