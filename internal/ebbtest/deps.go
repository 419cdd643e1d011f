package ebbtest

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// NeedGo skips the test without a go command on PATH.
func NeedGo(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command on PATH")
	}
}

// GoList runs go list with args in the current directory and returns its
// output's lines. It skips the test without a go command on PATH.
func GoList(t testing.TB, args ...string) []string {
	t.Helper()
	NeedGo(t)
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	return slices.DeleteFunc(strings.Split(string(out), "\n"), func(s string) bool { return s == "" })
}

// Forbidden returns the packages of deps (as go list -deps lists them,
// dependencies first) for which bad is true, as an error message names
// them: the last six, which the binary's own packages import (the rest
// come with them), and how many more; "" when there is none.
func Forbidden(deps []string, bad func(pkg string) bool) string {
	var found []string
	for _, p := range deps {
		if bad(p) {
			found = append(found, p)
		}
	}
	const shown = 6
	switch {
	case len(found) == 0:
		return ""
	case len(found) > shown:
		return fmt.Sprintf("%s (and %d more)", strings.Join(found[len(found)-shown:], ", "), len(found)-shown)
	}
	return strings.Join(found, ", ")
}
