package kubetest

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCRIWriter(t *testing.T) {
	var out bytes.Buffer
	cv := &criWriter{w: &out}
	long := strings.Repeat("x", maxLogLine+10)
	for _, chunk := range []string{"one\ntw", "o\n", "", long, "\nthree", " and more"} {
		if err := cv.write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	cv.flush()
	ts := regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z `)
	got := ts.ReplaceAllString(out.String(), "TS ")
	want := "TS stdout F one\n" +
		"TS stdout F two\n" +
		"TS stdout P " + long[:maxLogLine] + "\n" +
		"TS stdout F " + long[maxLogLine:] + "\n" +
		"TS stdout F three and more\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CRI log (-want +got):\n%s", diff)
	}
}
