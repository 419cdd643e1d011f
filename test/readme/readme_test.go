//go:build unix

// Package readme checks that the repository's README.md is true as
// written: its shell blocks marked runnable run, in order, against a real
// `ebb up`, and its YAML blocks that name a file of the repository are that
// file.
//
// The marker is an HTML comment on the line right before a ```sh fence,
// which GitHub does not show:
//
//	<!-- runnable -->          run the block against the running ebb up
//	<!-- runnable: setup -->   run it before ebb up starts, with GOBIN set
//	                           to the test's bin directory: it must install
//	                           ebb and ebb-replica there (the README's
//	                           `go install` block)
//
// Leave unmarked the blocks that start servers (ebb up itself, ebb gateway,
// ebb operator), need outside services (kubectl, an OIDC issuer, a remote
// server) or hold placeholders (ID, path/to/...).
//
// TestREADME runs the setup blocks, then starts `ebb up --demo` (the
// README's first command) from the repository root, on free loopback
// ports, with a temporary data dir, and runs every other marked block with
// `bash -euo pipefail -c` from the repository root, in README order, each
// within blockTimeout; the first failure stops the test, naming the block's
// line, its text and its output. What differs from a reader's shell:
//
//   - PATH starts with the bin directory the setup blocks installed into;
//   - EBB_SERVER is the test's ebb up, and EBB_DATA_DIR its data dir, where
//     the CLI finds the admin token as it finds ./.ebb/admin.token for a
//     reader's ebb up; EBB_CONFIG is an empty file of the test's, and
//     every other EBB_* variable is removed;
//   - in a block's text, 127.0.0.1:8080 and localhost:8080 (ebb up's
//     default address) become the test's address, and 127.0.0.1:8081 (the
//     default gRPC address) the test's gRPC address.
//
// The test stops ebb up with SIGTERM at its end (which drains and stops
// its replicas) and kills what a block left running in its process group.
package readme

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const (
	// blockTimeout bounds one marked block; setupTimeout a setup block,
	// which may compile ebb from a cold build cache.
	blockTimeout = 60 * time.Second
	setupTimeout = 10 * time.Minute
	// readme is the file checked, relative to this package's directory.
	readme = "../../README.md"
)

// block is a fenced code block of the README.
type block struct {
	line     int    // line of the opening fence, from 1
	lang     string // the fence's info string: sh, yaml, ...
	text     string // the lines between the fences, each ending in \n
	runnable bool   // marked <!-- runnable -->
	setup    bool   // marked <!-- runnable: setup -->
}

var markerRE = regexp.MustCompile(`^<!--\s*runnable(?:\s*:\s*(.*?))?\s*-->$`)

// parseBlocks returns the fenced blocks of a Markdown text in order, with
// their markers. A marker that is not right before a sh fence, or that has
// an option other than setup, is an error.
func parseBlocks(md string) ([]block, error) {
	var (
		blocks []block
		open   *block
		marked *block // the marker seen on the line before, if any
		fence  string
	)
	for i, l := range strings.Split(md, "\n") {
		n := i + 1
		if open != nil {
			if strings.TrimRight(l, " \t") == fence {
				blocks = append(blocks, *open)
				open = nil
				continue
			}
			open.text += l + "\n"
			continue
		}
		if m := markerRE.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			b := block{runnable: true}
			for _, opt := range strings.FieldsFunc(m[1], func(r rune) bool { return r == ',' || r == ' ' }) {
				if opt != "setup" {
					return nil, fmt.Errorf("line %d: unknown marker option %q (known: setup)", n, opt)
				}
				b.setup = true
			}
			marked = &b
			continue
		}
		if strings.HasPrefix(l, "```") {
			fence = strings.TrimRight(l[:len(l)-len(strings.TrimLeft(l, "`"))], " ")
			b := block{line: n, lang: strings.TrimSpace(strings.TrimLeft(l, "`"))}
			if marked != nil {
				if b.lang != "sh" && b.lang != "bash" {
					return nil, fmt.Errorf("line %d: a runnable marker before a %q block; only sh blocks run", n-1, b.lang)
				}
				b.runnable, b.setup = true, marked.setup
			}
			open, marked = &b, nil
			continue
		}
		if marked != nil {
			return nil, fmt.Errorf("line %d: a runnable marker not right before a ```sh fence", n-1)
		}
	}
	if open != nil {
		return nil, fmt.Errorf("line %d: a block that never closes", open.line)
	}
	if marked != nil {
		return nil, errors.New("a runnable marker at the end of the file")
	}
	return blocks, nil
}

func readBlocks(t *testing.T) []block {
	t.Helper()
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := parseBlocks(string(b))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	return blocks
}

func TestParseBlocks(t *testing.T) {
	for _, tt := range []struct {
		name, md string
		want     []block
		wantErr  string
	}{
		{name: "unmarked", md: "text\n```sh\nebb up\n```\n", want: []block{{line: 2, lang: "sh", text: "ebb up\n"}}},
		{name: "marked", md: "<!-- runnable -->\n```sh\nebb get deployments\n\n# two\n```\n```yaml\na: 1\n```\n",
			want: []block{{line: 2, lang: "sh", text: "ebb get deployments\n\n# two\n", runnable: true}, {line: 7, lang: "yaml", text: "a: 1\n"}}},
		{name: "setup", md: "<!-- runnable: setup -->\n```sh\ngo install ./cmd/ebb\n```", want: []block{{line: 2, lang: "sh", text: "go install ./cmd/ebb\n", runnable: true, setup: true}}},
		{name: "longer fence", md: "````sh\n```\n````\n", want: []block{{line: 1, lang: "sh", text: "```\n"}}},
		{name: "no fence language", md: "```\nclient ──► gateway\n```\n", want: []block{{line: 1, text: "client ──► gateway\n"}}},
		{name: "marker before text", md: "<!-- runnable -->\ntext\n```sh\nx\n```\n", wantErr: "line 1: a runnable marker not right before"},
		{name: "marker before yaml", md: "<!-- runnable -->\n```yaml\na: 1\n```\n", wantErr: `line 1: a runnable marker before a "yaml" block`},
		{name: "unknown option", md: "<!-- runnable: needs=python -->\n```sh\nx\n```\n", wantErr: `line 1: unknown marker option "needs=python"`},
		{name: "unclosed", md: "```sh\nx\n", wantErr: "line 1: a block that never closes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseBlocks(tt.md)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestREADMEYAML checks that a YAML block whose first line is a comment
// naming a file of the repository (# examples/diabetes/deployment.yaml)
// holds the same document as that file, comments aside.
func TestREADMEYAML(t *testing.T) {
	checked := 0
	for _, b := range readBlocks(t) {
		if b.lang != "yaml" {
			continue
		}
		first, _, _ := strings.Cut(b.text, "\n")
		path, ok := strings.CutPrefix(first, "# ")
		if !ok || strings.ContainsAny(path, " \t") {
			continue
		}
		file, err := os.ReadFile(filepath.Join("../..", path))
		if err != nil {
			t.Errorf("README.md line %d: its YAML names %s: %v", b.line, path, err)
			continue
		}
		var shown, real any
		if err := yaml.Unmarshal([]byte(b.text), &shown); err != nil {
			t.Errorf("README.md line %d: %v", b.line, err)
			continue
		}
		if err := yaml.Unmarshal(file, &real); err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if !reflect.DeepEqual(shown, real) {
			t.Errorf("README.md line %d shows %s as\n%v\nbut the file holds\n%v", b.line, path, shown, real)
		}
		checked++
	}
	if checked == 0 {
		t.Error("no YAML block of README.md names a file of the repository (# path on its first line)")
	}
}

// TestREADME runs the README's runnable blocks in order against a real
// `ebb up` (see the package comment).
func TestREADME(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs ebb up and the README's commands")
	}
	for _, tool := range []string{"bash", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s on PATH", tool)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readBlocks(t)
	tmp := t.TempDir()
	bin, dataDir, config := filepath.Join(tmp, "bin"), filepath.Join(tmp, "data"), filepath.Join(tmp, "config.yaml")
	for _, d := range []string{bin, dataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(config, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	env := cleanEnv("PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"))

	var up *upProc
	ran := 0
	for _, b := range blocks {
		if !b.runnable {
			if b.lang == "sh" || b.lang == "bash" {
				t.Logf("README.md line %d: not marked runnable, not run", b.line)
			}
			continue
		}
		script, blockEnv, timeout := b.text, env, blockTimeout
		if b.setup {
			if up != nil {
				t.Fatalf("README.md line %d: a setup block after a runnable one; setup blocks run before ebb up starts", b.line)
			}
			blockEnv, timeout = append(blockEnv, "GOBIN="+bin), setupTimeout
		} else {
			if up == nil {
				up = startUp(t, root, bin, dataDir, env)
			}
			script = up.rewrite(script)
			blockEnv = append(blockEnv, "EBB_SERVER=http://"+up.addr, "EBB_DATA_DIR="+dataDir, "EBB_CONFIG="+config)
		}
		start := time.Now()
		out, err := runBlock(root, blockEnv, script, timeout)
		if err != nil {
			// ebb up's log follows, from the cleanup that stops it.
			t.Fatalf("README.md line %d: %v\n--- block ---\n%s--- output ---\n%s", b.line, err, script, out)
		}
		t.Logf("README.md line %d ran in %v:\n%s", b.line, time.Since(start).Round(time.Millisecond), out)
		ran++
		if b.setup {
			for _, name := range []string{"ebb", "ebb-replica"} {
				if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
					t.Fatalf("README.md line %d: the setup block installed no %s into GOBIN: %v", b.line, name, err)
				}
			}
		}
	}
	if up == nil {
		t.Fatal("README.md has no block marked <!-- runnable --> to run against ebb up")
	}
	t.Logf("%d README blocks ran", ran)
}

// cleanEnv returns this process's environment without EBB_* variables
// (a CI's EBB_STORE_DSN or EBB_TOKEN would change what the blocks reach)
// and with set's variables in place of any of the same name.
func cleanEnv(set ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "EBB_") || name == "GOBIN" {
			continue
		}
		replaced := false
		for _, s := range set {
			if n, _, _ := strings.Cut(s, "="); n == name {
				replaced = true
			}
		}
		if !replaced {
			env = append(env, kv)
		}
	}
	return append(env, set...)
}

// runBlock runs script with bash -euo pipefail in dir, in a process group
// of its own that is killed when it times out and once it ends, and
// returns its output.
func runBlock(dir string, env []string, script string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir, cmd.Env = dir, env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if cmd.Process != nil {
		// What the block left in the background: only its own group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("did not end within %v", timeout)
	}
	return out.Bytes(), err
}

// upProc is the `ebb up` the blocks run against.
type upProc struct {
	addr, grpcAddr string
	log            string
}

// rewrite puts the test's addresses in place of ebb up's defaults.
func (u *upProc) rewrite(script string) string {
	_, port, _ := net.SplitHostPort(u.addr)
	return strings.NewReplacer(
		"127.0.0.1:8080", u.addr,
		"localhost:8080", "localhost:"+port,
		"127.0.0.1:8081", u.grpcAddr,
	).Replace(script)
}

func (u *upProc) logTail() string {
	b, _ := os.ReadFile(u.log)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// startUp runs bin/ebb up --demo from root on free loopback ports and
// returns once it is ready and has written its admin token; it is stopped
// with SIGTERM when the test ends.
func startUp(t *testing.T, root, bin, dataDir string, env []string) *upProc {
	t.Helper()
	u := &upProc{addr: freeAddr(t), grpcAddr: freeAddr(t), log: filepath.Join(filepath.Dir(dataDir), "ebb-up.log")}
	logFile, err := os.Create(u.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(bin, "ebb"), "up", "--demo", "--addr", u.addr, "--grpc-addr", u.grpcAddr,
		"--data-dir", dataDir, "--drain-timeout", "10s")
	cmd.Dir, cmd.Env = root, env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("ebb up log (end):\n%s", u.logTail())
		}
	})
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("http://" + u.addr + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if _, err := os.Stat(filepath.Join(dataDir, "admin.token")); err == nil && resp.StatusCode == http.StatusOK {
				return u
			}
		}
		select {
		case <-done:
			t.Fatalf("ebb up exited early:\n%s", u.logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ebb up not ready within 30s:\n%s", u.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
