package predlog

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// discardSink drops everything.
type discardSink struct{}

func (discardSink) Write([]Record) error { return nil }
func (discardSink) Tick(time.Time) error { return nil }
func (discardSink) Close() error         { return nil }

// BenchmarkLog is Log's cost to the request path: at sampling 0 (the
// decision only) and at 1 (the decision, the copy of a 1 KiB request and
// a 256 B response, and queueing), with Run draining to a sink that
// drops everything.
func BenchmarkLog(b *testing.B) {
	in, out := make([]byte, 1<<10), make([]byte, 256)
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("req-%08d", i)
	}
	for _, ratio := range []float64{0, 1} {
		b.Run(fmt.Sprintf("ratio=%v", ratio), func(b *testing.B) {
			l := New(discardSink{}, Options{})
			l.SetSampling(map[string]float64{"iris": ratio})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- l.Run(ctx) }()
			rec := Record{Time: time.Now(), Deployment: "iris", ModelVersion: "3", Tenant: "t", Inputs: in, Outputs: out, Status: 200}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				rec.RequestID = ids[i%len(ids)]
				i++
				l.Log(rec)
			}
			b.StopTimer()
			cancel()
			<-done
		})
	}
}
