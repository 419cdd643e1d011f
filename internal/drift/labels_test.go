package drift

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/predlog"
)

func TestPredictionsOf(t *testing.T) {
	rec := func(id, outputs string) *predlog.Record {
		return &predlog.Record{Deployment: "d", RequestID: id, Outputs: []byte(outputs), Status: 200}
	}
	tests := []struct {
		name    string
		rec     *predlog.Record
		version string
		want    []monitor.Prediction
	}{
		{"one row", rec("r1", `{"model_version":"3","outputs":[{"name":"y","datatype":"FP32","shape":[1],"data":[2.5]}]}`), "m:3",
			[]monitor.Prediction{{Key: "r1", Deployment: "d", Version: "m:3", Num: 2.5}}},
		{"a batch, the answer's version", rec("r2", `{"model_version":"3","outputs":[{"name":"y","datatype":"INT64","shape":[2,1],"data":[1,0]}]}`), "",
			[]monitor.Prediction{{Key: "r2:0", Deployment: "d", Version: "3", Num: 1}, {Key: "r2:1", Deployment: "d", Version: "3"}}},
		{"class scores: the largest", rec("r3", `{"outputs":[{"name":"p","datatype":"FP32","shape":[1,3],"data":[0.1,0.7,0.2]}]}`), "1",
			[]monitor.Prediction{{Key: "r3", Deployment: "d", Version: "1", Num: 1}}},
		{"classes as text", rec("r4", `{"outputs":[{"name":"c","datatype":"BYTES","shape":[1],"data":["cat"]}]}`), "1",
			[]monitor.Prediction{{Key: "r4", Deployment: "d", Version: "1", Str: "cat", IsStr: true}}},
		{"no request id", rec("", `{"outputs":[{"name":"y","datatype":"FP32","shape":[1],"data":[1]}]}`), "1", nil},
		{"an error answer", rec("r5", `{"error":"boom"}`), "1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, predictionsOf(tt.rec, tt.version)); diff != "" {
				t.Errorf("predictions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIndexForgetsTheOldest(t *testing.T) {
	x := NewIndex(3)
	for i := range 5 {
		x.Add([]monitor.Prediction{{Key: fmt.Sprint(i), Deployment: "d", Num: float64(i)}})
	}
	x.Add([]monitor.Prediction{{Key: "4", Deployment: "other", Num: 40}})
	for key, want := range map[string]bool{"0": false, "1": false, "2": false, "3": true, "4": true} {
		if _, ok := x.Lookup("d", key); ok != want {
			t.Errorf("Lookup(d, %s) found %v; want %v", key, ok, want)
		}
	}
	if p, ok := x.Lookup("other", "4"); !ok || p.Num != 40 {
		t.Errorf("Lookup(other, 4) = %v, %v", p, ok)
	}
}

func TestOutbox(t *testing.T) {
	o := NewOutbox(3)
	add := func(keys ...string) {
		var ps []monitor.Prediction
		for _, k := range keys {
			ps = append(ps, monitor.Prediction{Key: k})
		}
		o.Add(ps)
	}
	keys := func(ps []monitor.Prediction) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Key)
		}
		return out
	}
	add("a", "b")
	got, end := o.peek(10)
	add("c", "d") // a falls out while b, c, d wait
	o.ack(end)    // a and b were shipped
	if got, _ := o.peek(10); !cmp.Equal(keys(got), []string{"c", "d"}) {
		t.Errorf("after ack: %v; want c, d", keys(got))
	}
	if !cmp.Equal(keys(got), []string{"a", "b"}) {
		t.Errorf("first peek: %v; want a, b", keys(got))
	}
	o.ack(end) // again: nothing more goes
	if got, _ := o.peek(1); !cmp.Equal(keys(got), []string{"c"}) {
		t.Errorf("peek(1) = %v; want c", keys(got))
	}
}

// A gateway's logged predictions reach the operator's hub with its
// windows, and labels join there.
func TestHubJoinsGatewayPredictions(t *testing.T) {
	hub := NewHub(monitor.WindowOptions{})
	srv := httptest.NewServer(hub.Handler())
	defer srv.Close()
	mon := NewMonitor(monitor.WindowOptions{})
	out := NewOutbox(0)
	r := &Remote{Gateway: "gw", Base: srv.URL, HTTP: srv.Client(), Monitor: mon, Outbox: out}
	recs := records(t, 20, 0, true, 5) // answers y = 2a + b, model_version 3; no profile watched
	if err := NewSink(mon, out, nil, nil).Write(recs); err != nil {
		t.Fatal(err)
	}
	if err := r.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := out.peek(1); len(got) != 0 {
		t.Errorf("%d predictions still queued after a ship", len(got))
	}
	var labels []monitor.Label
	for i := range 20 {
		p, ok := hub.index.Lookup("d", fmt.Sprintf("%d:0", i))
		if !ok {
			t.Fatalf("prediction %d:0 not at the hub", i)
		}
		labels = append(labels, monitor.Label{Key: p.Key, Value: fmt.Sprint(p.Num + 2)})
	}
	rep, err := hub.JoinLabels("d", labels, monitor.TaskAuto)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Versions) != 1 || rep.Versions[0].Version != "3" || rep.Versions[0].Matched != 20 || *rep.Versions[0].MAE < 1.999 || *rep.Versions[0].MAE > 2.001 {
		t.Errorf("report %+v; want version 3, 20 matched, MAE 2", rep)
	}
}
