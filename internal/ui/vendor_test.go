package ui

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestVendoredFiles checks the files hack/ui-vendor.sh copied from the npm
// registry: each embedded file has the sha256 the script recorded when it
// installed package-lock.json's pinned, integrity-checked tarball, and the
// recorded version is the one package.json pins and the lock resolves.
// `hack/ui-vendor.sh --check` downloads again and compares.
func TestVendoredFiles(t *testing.T) {
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	var lock struct {
		Packages map[string]struct {
			Version   string `json:"version"`
			Integrity string `json:"integrity"`
		} `json:"packages"`
	}
	readJSON(t, "npm/package.json", &pkg)
	readJSON(t, "npm/package-lock.json", &lock)
	pin := pkg.Dependencies["uplot"]
	locked := lock.Packages["node_modules/uplot"]
	if pin == "" || pin != locked.Version {
		t.Fatalf("package.json pins uplot %q, package-lock.json has %q: pin an exact version and run npm install --package-lock-only, then hack/ui-vendor.sh", pin, locked.Version)
	}
	if !strings.HasPrefix(locked.Integrity, "sha512-") {
		t.Errorf("package-lock.json has no sha512 integrity for uplot (%q)", locked.Integrity)
	}

	f, err := os.Open("npm/vendored.sha256")
	if err != nil {
		t.Fatalf("%v: run hack/ui-vendor.sh", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	seen := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			if !strings.Contains(line, "uplot@"+pin+",") {
				t.Errorf("vendored.sha256 records %q, not uplot@%s: run hack/ui-vendor.sh", line, pin)
			}
			continue
		}
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("vendored.sha256: bad line %q", line)
		}
		b, err := assets.ReadFile("assets/vendor/" + name)
		if err != nil {
			t.Errorf("vendored %s is not embedded: %v", name, err)
			continue
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("assets/vendor/%s has sha256 %x, but hack/ui-vendor.sh copied %s from the registry's tarball: run hack/ui-vendor.sh, do not edit vendored files", name, got, sum)
		}
		seen++
	}
	if seen < 2 {
		t.Errorf("vendored.sha256 lists %d files, want uPlot's script and stylesheet at least", seen)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
