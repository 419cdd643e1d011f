package control

import (
	"context"
	"math"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/ebb-ml/ebb/internal/serving"
)

// TestCostBook: replica-seconds add up by hour; a report sums the hours
// in its period, takes their peak and compares with always-on at that
// peak; a period that starts before the record is partial; a deleted
// deployment is forgotten.
func TestCostBook(t *testing.T) {
	start := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	b := costBook{started: start}
	// Two replicas for the first 30 minutes, then none, then four for 10
	// minutes in the third hour; a second deployment runs one all along.
	for s := 0; s < 3*3600; s++ {
		now := start.Add(time.Duration(s) * time.Second)
		switch {
		case s < 1800:
			b.add("a", now, 2, 0, time.Second)
		case s >= 2*3600 && s < 2*3600+600:
			b.add("a", now, 4, 0, time.Second)
		}
		b.add("b", now, 1, 2, time.Second) // one replica of 2 GPUs
	}
	end := start.Add(3 * time.Hour)
	tests := []struct {
		name                   string
		deployment             string
		since                  time.Time
		wantUsed, wantAlwaysOn float64
		wantPeak               int32
		wantPartial            bool
		wantGPUs               float64 // GPU-seconds; always-on: wantGPUPeak × the period
		wantGPUPeak            int64
	}{
		{name: "the whole record", deployment: "a", since: start, wantUsed: 2*1800 + 4*600, wantPeak: 4, wantAlwaysOn: 4 * 3 * 3600},
		{name: "the last hour", deployment: "a", since: end.Add(-time.Hour), wantUsed: 4 * 600, wantPeak: 4, wantAlwaysOn: 4 * 3600},
		{name: "the second hour: nothing ran", deployment: "a", since: start.Add(time.Hour), wantUsed: 4 * 600, wantPeak: 4, wantAlwaysOn: 4 * 2 * 3600},
		{name: "before the record: partial", deployment: "b", since: start.Add(-24 * time.Hour), wantUsed: 3 * 3600, wantPeak: 1, wantAlwaysOn: 3 * 3600, wantPartial: true,
			wantGPUs: 2 * 3 * 3600, wantGPUPeak: 2},
		{name: "unknown", deployment: "c", since: start},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := b.cost(tt.deployment, tt.since, end)
			if c.ReplicaSeconds != tt.wantUsed || c.PeakReplicas != tt.wantPeak || c.AlwaysOnSeconds != tt.wantAlwaysOn || c.Partial != tt.wantPartial {
				t.Fatalf("cost = %+v; want %v replica-seconds, peak %d, always-on %v, partial %v", c, tt.wantUsed, tt.wantPeak, tt.wantAlwaysOn, tt.wantPartial)
			}
			if c.GPUSeconds != tt.wantGPUs || c.PeakGPUs != tt.wantGPUPeak || c.AlwaysOnGPUSeconds != float64(tt.wantGPUPeak)*end.Sub(c.Recorded).Seconds() {
				t.Errorf("cost = %+v; want %v GPU-seconds, GPU peak %d, always-on at it", c, tt.wantGPUs, tt.wantGPUPeak)
			}
			if want := tt.wantUsed / tt.wantAlwaysOn; tt.wantAlwaysOn > 0 && math.Abs(c.Reduction-want) > 1e-9 {
				t.Errorf("reduction %v; want %v", c.Reduction, want)
			}
		})
	}
	b.forget("a")
	if got := b.names(); len(got) != 1 || got[0] != "b" {
		t.Errorf("after forget(a), names = %v; want [b]", got)
	}
}

// TestControllerCostsItsReplicas: the loop records, tick by tick, the
// replicas a deployment keeps, and Cost reports them, with their GPUs.
func TestControllerCostsItsReplicas(t *testing.T) {
	d := dep("m", serving.Scaling{MinReplicas: 2, MaxReplicas: 3})
	d.Spec.Template.Resources.Limits = serving.ResourceList{serving.ResourceGPU: resource.MustParse("3")}
	f := newFixture(t, d)
	since := f.clock.Now()
	f.tick()
	f.until("m", "2 ready", ready(2))
	cost := func() float64 {
		c, err := f.ctl.Cost(context.Background(), "m", since)
		if err != nil {
			t.Fatal(err)
		}
		if c.PeakReplicas > 2 {
			t.Fatalf("peak %d replicas; the deployment kept 2", c.PeakReplicas)
		}
		return c.ReplicaSeconds
	}
	// Each tick, once the loop has taken it, adds the 2 replicas' second.
	for i := range 10 {
		before := cost()
		f.tick()
		deadline := time.Now().Add(10 * time.Second)
		for cost() < before+2 {
			if time.Now().After(deadline) {
				t.Fatalf("tick %d: replica-seconds stayed at %v; want %v", i, cost(), before+2)
			}
			time.Sleep(time.Millisecond)
		}
	}
	c, _ := f.ctl.Cost(context.Background(), "m", since)
	if c.GPUSeconds != 3*c.ReplicaSeconds || c.PeakGPUs != 3*int64(c.PeakReplicas) {
		t.Errorf("cost = %+v; want GPU-seconds and GPU peak 3 × the replicas'", c)
	}
	all, err := f.ctl.CostAll(context.Background(), since)
	if err != nil || len(all) != 1 || all[0].Deployment != "m" {
		t.Fatalf("CostAll = %+v, %v; want m alone", all, err)
	}
}
