package rollout

import (
	"context"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/traffic"
)

// stateLog records what a Manager tells Options.State.
type stateLog struct{ got []string }

func (l *stateLog) record(deployment string, s Status) {
	l.got = append(l.got, deployment+" "+string(s.Phase)+" "+map[bool]string{true: "active", false: "inactive"}[s.Active])
}

// take returns what was recorded since the last take, without repeats.
func (l *stateLog) take() []string {
	var out []string
	for _, g := range l.got {
		if len(out) == 0 || out[len(out)-1] != g {
			out = append(out, g)
		}
	}
	l.got = nil
	return out
}

func TestStateIsReported(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "/models/m.json")
	log := &stateLog{}
	f.m.opts.State = log.record
	steps := []struct {
		name string
		do   func()
		want []string
	}{
		{"start", func() {
			if _, err := f.m.Start(ctx, "m", Request{To: "/models/m-v2.json"}); err != nil {
				t.Fatal(err)
			}
		}, []string{"m Progressing active"}},
		{"a pass that waits", func() { f.m.Pass(ctx) }, []string{"m Progressing active"}},
		{"an advance", func() {
			if st := f.minute(6000, 600, 0); st.Weight != 25 {
				t.Fatalf("weight %d after a good minute", st.Weight)
			}
		}, []string{"m Progressing active"}},
		{"pause", func() {
			if _, err := f.m.Pause(ctx, "m", "alice"); err != nil {
				t.Fatal(err)
			}
		}, []string{"m Paused active"}},
		{"restart", func() {
			f.restart()
			f.m.opts.State = log.record
			f.m.Pass(ctx)
		}, []string{"m Paused active"}},
		{"resume", func() {
			if _, err := f.m.Resume(ctx, "m"); err != nil {
				t.Fatal(err)
			}
		}, []string{"m Progressing active"}},
		{"rollback", func() {
			if st := f.minute(6000, 1500, 300); st.Phase != traffic.RolledBack {
				t.Fatalf("%s after a failing minute", st.Phase)
			}
		}, []string{"m RolledBack active", "m RolledBack inactive"}},
		{"a pass after the end", func() { f.m.Pass(ctx) }, nil},
		{"start and abort", func() {
			if _, err := f.m.Start(ctx, "m", Request{To: "/models/m-v3.json"}); err != nil {
				t.Fatal(err)
			}
			if _, err := f.m.Abort(ctx, "m", "bob"); err != nil {
				t.Fatal(err)
			}
		}, []string{"m Progressing active", "m Aborted active", "m Aborted inactive"}},
	}
	for _, s := range steps {
		s.do()
		if got := log.take(); strings.Join(got, ", ") != strings.Join(s.want, ", ") {
			t.Errorf("%s: State was told %q; want %q", s.name, got, s.want)
		}
	}
}
