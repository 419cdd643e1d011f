package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCLIConfigContexts(t *testing.T) {
	prod, staging := newFullEnv(t), newFullEnv(t)
	path := isolate(t)
	prod.mustRun(t, `{"name":"on-prod","spec":{"model":"m.json"}}`, "deploy", "-f", "-")
	staging.mustRun(t, `{"name":"on-staging","spec":{"model":"m.json"}}`, "deploy", "-f", "-")
	ebb := func(args ...string) string {
		t.Helper()
		out, err := runEbb(t, "", args...)
		if err != nil {
			t.Fatalf("ebb %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	deployments := func(args ...string) string {
		t.Helper()
		var l struct{ Items []struct{ Name string } }
		out := ebb(append([]string{"get", "deployments", "-o", "json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Items) != 1 {
			t.Fatalf("get deployments %v = %s, %v", args, out, err)
		}
		return l.Items[0].Name
	}

	if out := ebb("config", "set-context", "prod", "--server", prod.url, "--token", "s3cr3t"); out != "Context \"prod\" created.\n" {
		t.Errorf("set-context printed %q", out)
	}
	ebb("config", "set-context", "staging", "--server", strings.TrimPrefix(staging.url, "http://")) // http:// is added
	if _, err := runEbb(t, "", "config", "current-context"); err == nil || !strings.Contains(err.Error(), "ebb config use-context NAME") {
		t.Errorf("current-context with none = %v, want a hint", err)
	}
	if out := ebb("config", "use-context", "prod"); out != "Switched to context \"prod\".\n" {
		t.Errorf("use-context printed %q", out)
	}
	if out := ebb("config", "current-context"); out != "prod\n" {
		t.Errorf("current-context = %q", out)
	}
	want := [][]string{
		{"CURRENT", "NAME", "SERVER", "TOKEN"},
		{"*", "prod", prod.url, "set"},
		{"staging", staging.url, "-"},
	}
	if diff := cmp.Diff(want, fields(ebb("config", "get-contexts"))); diff != "" {
		t.Errorf("get-contexts (-want +got):\n%s", diff)
	}
	if out := ebb("config", "get-contexts", "-o", "json"); strings.Contains(out, "s3cr3t") || !strings.Contains(out, `"token": "REDACTED"`) {
		t.Errorf("get-contexts -o json shows the token or no redaction:\n%s", out)
	}

	// Precedence: --server > --context > $EBB_SERVER > current context.
	if got := deployments(); got != "on-prod" || prod.lastAuth() != "Bearer s3cr3t" {
		t.Errorf("current context: got %s with auth %q, want on-prod with the token", got, prod.lastAuth())
	}
	if got := deployments("--context", "staging"); got != "on-staging" || staging.lastAuth() != "" {
		t.Errorf("--context staging: got %s with auth %q", got, staging.lastAuth())
	}
	t.Setenv(serverEnv, staging.url)
	if got := deployments(); got != "on-staging" {
		t.Errorf("$EBB_SERVER over the current context: got %s", got)
	}
	if got := deployments("--context", "prod"); got != "on-prod" {
		t.Errorf("--context over $EBB_SERVER: got %s", got)
	}
	if got := deployments("--context", "prod", "--server", staging.url); got != "on-staging" || staging.lastAuth() != "Bearer s3cr3t" {
		t.Errorf("--server over --context: got %s with auth %q; want staging with prod's token", got, staging.lastAuth())
	}
	t.Setenv(serverEnv, "")
	// Global flags go before the command too, as with kubectl.
	if out := ebb("--context", "staging", "get", "deployments"); !strings.Contains(out, "on-staging") {
		t.Errorf("ebb --context staging get deployments = %q", out)
	}

	// Changing only the token keeps the server; "" removes the token.
	if out := ebb("config", "set-context", "prod", "--token", ""); out != "Context \"prod\" modified.\n" {
		t.Errorf("set-context of an existing context printed %q", out)
	}
	deployments()
	if prod.lastAuth() != "" {
		t.Errorf("removed token still sent: %q", prod.lastAuth())
	}

	// The file: 0600, no temporary files left, readable YAML.
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("config file mode = %v, %v; want 0600", info.Mode(), err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("config dir holds %d entries, want only config.yaml", len(ents))
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "current-context: prod") || !strings.Contains(string(b), "server: "+staging.url) {
		t.Errorf("config file:\n%s", b)
	}

	if out := ebb("config", "delete-context", "prod"); !strings.Contains(out, `Deleted context "prod" from `+path) || !strings.Contains(out, "use-context") {
		t.Errorf("delete-context printed %q", out)
	}
	if diff := cmp.Diff([][]string{{"CURRENT", "NAME", "SERVER", "TOKEN"}, {"staging", staging.url, "-"}}, fields(ebb("config", "get-contexts"))); diff != "" {
		t.Errorf("after delete (-want +got):\n%s", diff)
	}
}

func TestCLIConfigErrors(t *testing.T) {
	path := isolate(t)
	for _, tt := range []struct {
		name string
		file string // config file content; "" for none
		args []string
		want []string
	}{
		{name: "unknown --context", args: []string{"get", "deployments", "--context", "nope"},
			want: []string{`no context "nope" in ` + path, "ebb config set-context nope --server URL"}},
		{name: "current context gone", file: "current-context: gone\ncontexts: []\n", args: []string{"get", "deployments"},
			want: []string{`the current context "gone" is not in ` + path, "ebb config use-context NAME"}},
		{name: "broken file", file: "contexts: [", args: []string{"get", "deployments"},
			want: []string{"ebb config " + path + " is not valid", "fix the file"}},
		{name: "unknown field", file: "contexts:\n- name: a\n  sever: http://x\n", args: []string{"version"},
			want: []string{path, `unknown field "sever"`}},
		{name: "twice", file: "contexts:\n- {name: a, server: http://x}\n- {name: a, server: http://y}\n", args: []string{"get", "models"},
			want: []string{path, `names context "a" twice`}},
		{name: "bad server in context", file: "current-context: a\ncontexts:\n- {name: a, server: 'ftp://x'}\n", args: []string{"get", "deployments"},
			want: []string{`server "ftp://x" must be a URL`, `context "a"`}},
		{name: "new context without server", args: []string{"config", "set-context", "a", "--token", "t"},
			want: []string{`context "a" is new: give its server with --server URL`}},
		{name: "bad server", args: []string{"config", "set-context", "a", "--server", "ftp://x"},
			want: []string{`must be a URL such as https://ebb.example.com`}},
		{name: "use unknown", args: []string{"config", "use-context", "b"},
			want: []string{`no context "b" in ` + path}},
		{name: "delete unknown", args: []string{"config", "delete-context", "b"},
			want: []string{`no context "b" in ` + path}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(path)
			if tt.file != "" {
				os.MkdirAll(filepath.Dir(path), 0o700)
				if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := runEbb(t, "", tt.args...)
			if err == nil {
				t.Fatalf("ebb %v succeeded, want an error", tt.args)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	// A broken config file does not stop commands that talk to no server,
	// nor an explicit --server.
	if err := os.WriteFile(path, []byte("contexts: ["), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runEbb(t, "", "models", "--help"); err != nil {
		t.Errorf("help with a broken config: %v", err)
	}
	e := newFullEnv(t)
	t.Setenv(configEnv, path)
	if _, err := e.run(t, "", "get", "deployments"); err != nil {
		t.Errorf("--server with a broken config file: %v", err)
	}
}
