package main

import (
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestStampFrom: the version and commit come from -ldflags when set, else
// from what the go command recorded (module version, vcs.*), else "dev".
func TestStampFrom(t *testing.T) {
	const rev = "788743b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7"
	vcs := []debug.BuildSetting{
		{Key: "-compiler", Value: "gc"},
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: rev},
		{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
		{Key: "vcs.modified", Value: "true"},
	}
	stamped := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/ebb-ml/ebb", Version: "v0.0.0-20260102030405-788743b1c2d3+dirty"}, Settings: vcs}
	for _, tt := range []struct {
		name                string
		bi                  *debug.BuildInfo
		ok                  bool
		ldVersion, ldCommit string
		want                buildStamp
	}{
		{name: "no build info", ok: false, ldVersion: "dev",
			want: buildStamp{Version: "dev"}},
		{name: "go run or go test", ok: true, ldVersion: "dev",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/ebb-ml/ebb", Version: "(devel)"}},
			want: buildStamp{Version: "dev", GoVersion: "go1.26.8"}},
		{name: "go build in a clone", ok: true, ldVersion: "dev", bi: stamped,
			want: buildStamp{Version: "v0.0.0-20260102030405-788743b1c2d3+dirty", Commit: rev, CommitTime: "2026-01-02T03:04:05Z", Modified: true, GoVersion: "go1.26.8"}},
		{name: "go install of a tag", ok: true, ldVersion: "dev",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/ebb-ml/ebb", Version: "v1.2.3"}},
			want: buildStamp{Version: "v1.2.3", GoVersion: "go1.26.8"}},
		{name: "ldflags version, vcs commit", ok: true, ldVersion: "v1.3.0", bi: stamped,
			want: buildStamp{Version: "v1.3.0", Commit: rev, CommitTime: "2026-01-02T03:04:05Z", Modified: true, GoVersion: "go1.26.8"}},
		{name: "ldflags version and the same commit", ok: true, ldVersion: "v1.3.0", ldCommit: rev, bi: stamped,
			want: buildStamp{Version: "v1.3.0", Commit: rev, CommitTime: "2026-01-02T03:04:05Z", Modified: true, GoVersion: "go1.26.8"}},
		{name: "ldflags commit of another tree", ok: true, ldVersion: "v1.3.0", ldCommit: "abc123", bi: stamped,
			want: buildStamp{Version: "v1.3.0", Commit: "abc123", GoVersion: "go1.26.8"}},
		{name: "empty ldflags version", ok: true, ldVersion: "", bi: &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			want: buildStamp{Version: "dev"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := stampFrom(tt.bi, tt.ok, tt.ldVersion, tt.ldCommit)
			want := tt.want
			if want.GoVersion == "" {
				want.GoVersion = runtime.Version()
			}
			want.Platform = runtime.GOOS + "/" + runtime.GOARCH
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("stampFrom (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEngines: onnx is in with cgo, or without it when an ebb-onnx serves
// it, and says whether its library is found; the others are always in.
func TestEngines(t *testing.T) {
	found := func(string) (string, error) { return "/opt/libonnxruntime.so.1", nil }
	missing := func(string) (string, error) { return "", errors.New("not found") }
	for _, tt := range []struct {
		name     string
		cgo      bool
		binary   string
		find     func(string) (string, error)
		wantIn   bool
		wantNote string
	}{
		{name: "cgo, library found", cgo: true, find: found, wantIn: true, wantNote: "ONNX Runtime at /opt/libonnxruntime.so.1"},
		{name: "cgo, no library", cgo: true, find: missing, wantIn: true, wantNote: "hack/install-onnxruntime.sh"},
		{name: "no cgo, no ebb-onnx", cgo: false, find: found, wantIn: false, wantNote: "no ebb-onnx is beside it"},
		{name: "no cgo, ebb-onnx", cgo: false, binary: "/bin/ebb-onnx", find: found, wantIn: true, wantNote: "in /bin/ebb-onnx: ONNX Runtime at /opt/libonnxruntime.so.1"},
		{name: "no cgo, ebb-onnx, no library", cgo: false, binary: "/bin/ebb-onnx", find: missing, wantIn: true, wantNote: "in /bin/ebb-onnx: ONNX Runtime"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			es := engines(tt.cgo, tt.binary, tt.find)
			var names []string
			for _, e := range es {
				names = append(names, e.Name)
				if e.Name != "onnx" && !e.In {
					t.Errorf("engine %s not in", e.Name)
				}
			}
			if diff := cmp.Diff([]string{"trees", "echo", "python", "http", "onnx"}, names); diff != "" {
				t.Errorf("engines (-want +got):\n%s", diff)
			}
			o := es[len(es)-1]
			if o.In != tt.wantIn || !strings.Contains(o.Note, tt.wantNote) {
				t.Errorf("onnx = %+v; want in %v, note with %q", o, tt.wantIn, tt.wantNote)
			}
		})
	}
}

func TestWriteStamp(t *testing.T) {
	es := []engineStamp{{Name: "trees", In: true}, {Name: "python", In: true, Note: "runs the model's Python interpreter"},
		{Name: "onnx", Note: "not in: built without cgo"}}
	for _, tt := range []struct {
		name string
		s    buildStamp
		want string
	}{
		{name: "go run", s: buildStamp{Version: "dev", GoVersion: "go1.26.8", Platform: "linux/amd64", Engines: es},
			want: "Client: dev (go1.26.8, linux/amd64)\nEngines: trees, python, onnx (not in: built without cgo)\n"},
		{name: "go build", s: buildStamp{Version: "v1.2.3", Commit: "788743b1c2d3e4f5a6b7", Modified: true, GoVersion: "go1.26.8", Platform: "linux/amd64", Engines: es[:1]},
			want: "Client: v1.2.3 (go1.26.8, linux/amd64, commit 788743b1c2d3, modified)\nEngines: trees\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			writeStamp(&b, tt.s)
			if b.String() != tt.want {
				t.Errorf("writeStamp = %q, want %q", b.String(), tt.want)
			}
		})
	}
}

// TestVersionStamp: `ebb version` prints this binary's stamp and engines,
// and -o json carries them.
func TestVersionStamp(t *testing.T) {
	e := newFullEnv(t)
	out := e.mustRun(t, "", "version")
	for _, want := range []string{"Client: " + version + " (" + runtime.Version(), "\nEngines: trees, echo, python, http, onnx"} {
		if !strings.Contains(out, want) {
			t.Errorf("ebb version = %q, want %q in it", out, want)
		}
	}
	var v versionOutput
	if err := json.Unmarshal([]byte(e.mustRun(t, "", "version", "-o", "json")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Client.Cgo != cgoBuild || len(v.Client.Engines) != 5 || v.Client.Engines[4].In != cgoBuild {
		t.Errorf("version -o json client = %+v; want cgo %v and onnx in iff cgo", v.Client, cgoBuild)
	}
}

// TestVersionBuilt builds ebb as a user does (go build in this clone,
// here with -ldflags setting the version) and checks the stamp it prints:
// the version -ldflags gave and the commit of the work tree.
func TestVersionBuilt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ebb")
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git clone, or no git: go build records no commit: %v", err)
	}
	rev := strings.TrimSpace(string(head))
	bin := filepath.Join(t.TempDir(), "ebb")
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "-ldflags", "-X main.version=v9.8.7", ".").CombinedOutput(); err != nil {
		if strings.Contains(string(out), "VCS status") {
			t.Skipf("go cannot read the clone's VCS status:\n%s", out)
		}
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if info, err := exec.Command("go", "version", "-m", bin).Output(); err == nil && !strings.Contains(string(info), "vcs.revision=") {
		// go records no VCS data for some checkouts (a git worktree, for
		// one): there is no commit to print.
		t.Skipf("go build recorded no vcs.revision for this checkout:\n%s", info)
	}
	out, _ := exec.Command(bin, "version", "--server", "http://127.0.0.1:1").CombinedOutput()
	for _, w := range []string{"Client: v9.8.7 (go", "commit " + rev[:12], "\nEngines: trees, "} {
		if !strings.Contains(string(out), w) {
			t.Errorf("ebb version = %q, want %q in it", out, w)
		}
	}
}
