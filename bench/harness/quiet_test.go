package harness

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCPUStat(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	stat := "cpu  100 1 50 800 9 0 20 30 0 0\ncpu0 50 1 25 400 4 0 10 15 0 0\n"
	got, err := parseCPUStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	want := cpuStat{busy: 100 + 1 + 50 + 20 + 30, steal: 30, total: 1010}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(cpuStat{})); diff != "" {
		t.Errorf("parseCPUStat (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", "intr 1 2 3\n", "cpu 1 2 x 4 5\n"} {
		if _, err := parseCPUStat(bad); err == nil {
			t.Errorf("parseCPUStat(%q) succeeded", bad)
		}
	}
}

func TestMarkdownCautionsOnStolenTime(t *testing.T) {
	for _, tc := range []struct {
		stolen float64
		want   bool
	}{{0.4, false}, {stolenCaution, true}, {7.5, true}} {
		r := &Report{Command: "make bench", Scenarios: []Outcome{
			{Name: "a", Title: "A", StolenPercent: 0.1},
			{Name: "b", Title: "B", StolenPercent: tc.stolen},
		}}
		md := r.Markdown()
		if got := strings.Contains(md, "**Caution:** this machine is a virtual machine"); got != tc.want {
			t.Errorf("stolen %.1f%%: caution shown = %v, want %v", tc.stolen, got, tc.want)
		}
		if !strings.Contains(md, "stolen by the hypervisor during it: 0.1%") {
			t.Errorf("scenario A's footer lacks its stolen share:\n%s", md)
		}
	}
}
