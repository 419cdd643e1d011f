package ebbtest

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestLeanBinaries links each binary as make build builds it and checks
// that no function it keeps is marked <ReflectMethod>: one that looks a
// method up by a name known only at run time (text/template and
// html/template executing a template, reflect.Value.MethodByName). Were
// one reachable, the linker would have to keep every exported method of
// every type in the binary, in case it is looked up: a fifth of ebb and a
// quarter of ebb-cluster, mapped by every process that runs them.
func TestLeanBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("links every binary")
	}
	NeedGo(t)
	for _, b := range Binaries {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			// -dumpdep prints every edge of the linker's reachability
			// graph on stderr, "from -> to", a <ReflectMethod> after the
			// functions that are.
			args := append(append([]string{"build", "-o", os.DevNull, "-ldflags=-dumpdep"}, LeanFlags...), b.Pkg)
			cmd := exec.Command("go", args...)
			cmd.Env = append(os.Environ(), b.Env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("go %s: %v\n%.2000s", strings.Join(args, " "), err, stderr.Bytes())
			}
			found := map[string]bool{}
			var names []string
			edges := 0
			sc := bufio.NewScanner(&stderr)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				from, _, ok := strings.Cut(sc.Text(), " -> ")
				if ok {
					edges++
				}
				if name, marked := strings.CutSuffix(from, " <ReflectMethod>"); ok && marked && !found[name] {
					found[name] = true
					names = append(names, name)
				}
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			if edges == 0 {
				t.Fatal("the linker printed no dependency graph: has -ldflags=-dumpdep changed?")
			}
			if len(names) > 0 {
				t.Errorf("%s, linked as make build links it (%s), keeps %d function(s) that look methods up by name: %s. "+
					"Something now executes a text/template or html/template, or calls reflect.Value.MethodByName: "+
					"find it with go build -ldflags=-dumpdep %s 2>&1 | grep -B3 ReflectMethod, and render without templates (as sqlstore's renderDDL does)",
					b.Pkg, strings.Join(LeanFlags, " "), len(names), strings.Join(names[:min(len(names), 5)], ", "), b.Pkg)
			}
		})
	}
}
