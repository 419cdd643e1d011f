package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/server/servertest"
	"github.com/ebb-ml/ebb/internal/telemetry"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestTracePoolModel checks that a pool's replica given a Tracer (ebb
// replica --pool with the tracing flags) traces its models' infer
// requests as a single model's replica does: an engine call under the
// request's traceparent, naming the engine, the replica and the model's
// version.
func TestTracePoolModel(t *testing.T) {
	const traceID, parentID = "0ebb0000000000000000000000000008", "0ebb000000000008"
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	s := NewPool("p", Options{ReplicaID: "p-0", Engine: "trees", Tracer: tp.Tracer(telemetry.TracerName)},
		PoolOptions{Engine: "trees", Load: (&treesLoader{}).load})
	c := servertest.Start(t, s)
	load := loadBody(tinyModel(t, t.TempDir(), 1))
	load["parameters"].(map[string]any)["model-version"] = "a:2"
	if code, body := postJSON(t, c.Base+"/v2/repository/models/a/load", load); code != http.StatusOK {
		t.Fatalf("load: %d %s", code, body)
	}
	x := rows(1, 1)
	body := fmt.Sprintf(`{"inputs":[{"name":%q,"shape":[1,%d],"datatype":"FP32","data":%s}]}`,
		x.Name, tinyFeatures, strings.ReplaceAll(fmt.Sprint(x.Data), " ", ","))
	req, _ := http.NewRequest(http.MethodPost, c.Base+"/v2/models/a/infer", strings.NewReader(body))
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("infer: status %d", resp.StatusCode)
	}
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != telemetry.SpanEngineCall {
		t.Fatalf("spans %v; want one %s", spans, telemetry.SpanEngineCall)
	}
	sp := spans[0]
	if sp.SpanContext().TraceID().String() != traceID || sp.Parent().SpanID().String() != parentID {
		t.Errorf("engine call in trace %s under %s; want trace %s under %s", sp.SpanContext().TraceID(), sp.Parent().SpanID(), traceID, parentID)
	}
	got := map[string]string{}
	for _, kv := range sp.Attributes() {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	if got["ebb.engine"] != "trees" || got["ebb.replica"] != "p-0" || got["ebb.model.version"] != "a:2" {
		t.Errorf("engine call attributes %v; want ebb.engine=trees, ebb.replica=p-0, ebb.model.version=a:2", got)
	}
}
