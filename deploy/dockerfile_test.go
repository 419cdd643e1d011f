package deploy

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/ebbtest"
	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/replica/kube"
	"github.com/ebb-ml/ebb/internal/replicacmd"
)

// No Docker engine runs where these tests run, so the image is never built
// here: these tests read the Dockerfile and check what it promises.

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// stage is one FROM and the instructions under it.
type stage struct {
	base, name string
	body       []instruction
}

func parseDockerfile(t *testing.T, path string) (args map[string]string, stages []stage) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	args = map[string]string{}
	var line strings.Builder
	sc := bufio.NewScanner(f)
	flush := func() {
		text := strings.TrimSpace(line.String())
		line.Reset()
		if text == "" {
			return
		}
		cmd, rest, _ := strings.Cut(text, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(rest)}
		switch {
		case in.cmd == "FROM":
			fields := strings.Fields(in.args)
			st := stage{base: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				st.name = fields[2]
			}
			stages = append(stages, st)
		case in.cmd == "ARG" && len(stages) == 0:
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		case len(stages) == 0:
			t.Fatalf("%s: %s before the first FROM", path, in.cmd)
		default:
			stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
		}
	}
	for sc.Scan() {
		text := sc.Text()
		if trimmed := strings.TrimSpace(text); strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(text, `\`) {
			line.WriteString(strings.TrimSuffix(text, `\`) + " ")
			continue
		}
		line.WriteString(text)
		flush()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	flush()
	return args, stages
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// copyDests returns the destinations of the stage's COPY --from=from.
func (s stage) copyDests(from string) map[string]string {
	dests := map[string]string{} // dest → src
	for _, in := range s.all("COPY") {
		fields := strings.Fields(in.args)
		if len(fields) != 3 || fields[0] != "--from="+from {
			continue
		}
		dests[fields[2]] = fields[1]
	}
	return dests
}

func TestDockerfile(t *testing.T) {
	args, stages := parseDockerfile(t, "../Dockerfile")
	names := map[string]int{}
	for i, s := range stages {
		if s.name != "" {
			names[s.name] = i
		}
	}
	build, ok := names["build"]
	if !ok {
		t.Fatalf("no stage named build in %+v", stages)
	}

	t.Run("build stage", func(t *testing.T) {
		s := stages[build]
		goMod, err := os.ReadFile("../go.mod")
		if err != nil {
			t.Fatal(err)
		}
		goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(goMod)
		if want := "golang:${GO_VERSION}-bookworm"; s.base != want || goVersion == nil || args["GO_VERSION"] != string(goVersion[1]) {
			t.Errorf("build stage FROM %s with GO_VERSION=%s; want FROM %s with go.mod's Go %s", s.base, args["GO_VERSION"], want, goVersion)
		}
		runs := s.all("RUN")
		// Every binary make build builds, with the same cgo setting and
		// without gRPC's tracing (internal/ebbtest.Binaries): ebb and the
		// lean ebb-replica static, ebb-cluster and ebb-onnx with cgo (the
		// onnx engine).
		for _, b := range ebbtest.Binaries {
			cmd := b.Pkg[strings.Index(b.Pkg, "/cmd/")+1:]
			if !slices.ContainsFunc(runs, func(in instruction) bool {
				return strings.Contains(in.args, b.Env[0]) && strings.Contains(in.args, "go build") &&
					strings.Contains(in.args, "-tags grpcnotrace") && strings.Contains(in.args, "-o /out/"+b.Name+" ./"+cmd)
			}) {
				t.Errorf("build stage has no RUN that builds ./%s with %s and -tags grpcnotrace into /out/%s: %+v", cmd, b.Env[0], b.Name, runs)
			}
		}
		// The install script, run as root, puts the library at the first of
		// the paths ebb searches.
		if len(s.all("USER")) > 0 || !slices.ContainsFunc(runs, func(in instruction) bool { return in.args == "hack/install-onnxruntime.sh" }) {
			t.Errorf("build stage must run hack/install-onnxruntime.sh as root (no USER, no DIR argument): %+v", s.body)
		}
	})

	lib := onnx.DefaultLibraryPaths()[0]
	const binary = "/usr/local/bin/ebb" // on PATH in distroless and Debian
	// Replica pods run kube.Binary by name; an onnx replica execs the
	// ebb-onnx beside it.
	replicaBinary := "/usr/local/bin/" + kube.Binary
	onnxBinary := "/usr/local/bin/" + replicacmd.ONNXBinary
	// The chart's operator and gateway run ebb-cluster by name.
	const clusterBinary = "/usr/local/bin/ebb-cluster"
	for i, s := range stages {
		if len(s.all("ENTRYPOINT")) == 0 {
			continue // not an image to run
		}
		t.Run("stage "+s.name, func(t *testing.T) {
			users := s.all("USER")
			if len(users) == 0 {
				t.Fatal("no USER: the image would run as root")
			}
			user, _, _ := strings.Cut(users[len(users)-1].args, ":")
			if user == "root" || user == "0" {
				t.Errorf("USER %s: want a non-root user", users[len(users)-1].args)
			}
			// The entrypoint is ebb (a pod without a command runs ebb; its
			// operator and gateway commands exec the ebb-cluster beside it).
			entry := s.all("ENTRYPOINT")
			var argv []string
			if err := json.Unmarshal([]byte(entry[len(entry)-1].args), &argv); err != nil || !slices.Equal(argv, []string{binary}) {
				t.Errorf(`ENTRYPOINT %s: want the exec form ["%s"]`, entry[len(entry)-1].args, binary)
			}
			dests := s.copyDests("build")
			if dests[binary] != "/out/ebb" {
				t.Errorf("no COPY --from=build /out/ebb %s: %v", binary, dests)
			}
			if dests[clusterBinary] != "/out/ebb-cluster" {
				t.Errorf("no COPY --from=build /out/ebb-cluster %s (the chart's pods run it by name, from PATH): %v", clusterBinary, dests)
			}
			if dests[replicaBinary] != "/out/ebb-replica" {
				t.Errorf("no COPY --from=build /out/ebb-replica %s (replica pods run it by name, from PATH): %v", replicaBinary, dests)
			}
			if dests[onnxBinary] != "/out/ebb-onnx" {
				t.Errorf("no COPY --from=build /out/ebb-onnx %s (an onnx replica execs it, beside ebb-replica): %v", onnxBinary, dests)
			}
			libCopied := false
			for dest, src := range dests {
				under := dest == lib || strings.HasPrefix(lib, strings.TrimSuffix(dest, "/")+"/")
				libCopied = libCopied || (under && src == dest)
			}
			if !libCopied {
				t.Errorf("ONNX Runtime's library %s (where ebb looks first) is not copied from the build stage: %v", lib, dests)
			}
			if dests["/usr/lib/locale/locale-archive"] == "" {
				t.Errorf("the en_US.UTF-8 locale ONNX Runtime's string operators need is not copied: %v", dests)
			}
			for _, in := range s.all("COPY") {
				from, ok := strings.CutPrefix(strings.Fields(in.args)[0], "--from=")
				if j, named := names[from]; ok && (!named || j >= i) {
					t.Errorf("COPY --from=%s: no earlier stage of that name", from)
				}
			}
		})
	}
	if last := stages[len(stages)-1]; !strings.HasPrefix(last.base, "gcr.io/distroless/") || !strings.HasSuffix(last.base, ":nonroot") {
		t.Errorf("default (last) stage FROM %s: want a distroless :nonroot base", last.base)
	}
}

// TestDockerignore checks that the build context keeps every directory
// `go build` of every binary of the image reads.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimPrefix(l, "/"))
		}
	}
	out, err := exec.Command("go", "list", "-deps", "-f", `{{if not .Standard}}{{.Dir}}{{range .EmbedFiles}} {{$.Dir}}/{{.}}{{end}}{{end}}`, "../cmd/ebb", "../cmd/ebb-cluster", "../cmd/ebb-replica", "../cmd/ebb-onnx").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	needed := []string{"go.mod", "go.sum", "hack/install-onnxruntime.sh"}
	for _, p := range strings.Fields(string(out)) {
		if rel, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(rel, "..") {
			needed = append(needed, filepath.ToSlash(rel))
		}
	}
	if len(needed) < 10 {
		t.Fatalf("go list found only %v", needed)
	}
	for _, path := range needed {
		for _, pat := range patterns {
			if ignores(pat, path) {
				t.Errorf(".dockerignore pattern %q drops %s, which the image build needs", pat, path)
			}
		}
	}
}

// ignores reports whether a .dockerignore pattern matches path or one of
// its parent directories (** standing for any number of directories).
func ignores(pattern, path string) bool {
	parts := strings.Split(path, "/")
	for i := 1; i <= len(parts); i++ {
		prefix := strings.Join(parts[:i], "/")
		if ok, _ := filepath.Match(pattern, prefix); ok {
			return true
		}
		if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
			if m, _ := filepath.Match(rest, parts[i-1]); m {
				return true
			}
		}
	}
	return false
}
