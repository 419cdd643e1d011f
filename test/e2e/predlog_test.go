package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/ebb-ml/ebb/internal/artifact/artifacttest"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/predlog"
	"github.com/ebb-ml/ebb/internal/serving"
)

// predictionRecords reads the complete parts of a home's prediction log.
type predictionRecords func() ([]predlog.JSONRecord, error)

// predictionFiles reads the JSONL parts in dir: ebb up's
// --prediction-log-dir.
func predictionFiles(dir string) predictionRecords {
	return func() ([]predlog.JSONRecord, error) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		var out []predlog.JSONRecord
		for _, e := range entries {
			if _, ok := predlog.ParsePartName(e.Name()); !ok {
				continue // the part being written, under its temporary name
			}
			f, err := os.Open(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, err
			}
			recs, err := readJSONLines(f)
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.Name(), err)
			}
			out = append(out, recs...)
		}
		return out, nil
	}
}

// predictionObjects reads the JSONL parts the gateways uploaded under
// prefix in the S3 bucket: the chart's default, the artifacts' bucket
// under predictions/.
func predictionObjects(s3 *artifacttest.S3Server, prefix string) predictionRecords {
	return func() ([]predlog.JSONRecord, error) {
		mc, err := s3.Client()
		if err != nil {
			return nil, err
		}
		ctx := context.Background()
		var out []predlog.JSONRecord
		for o := range mc.ListObjects(ctx, s3.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if o.Err != nil {
				return nil, o.Err
			}
			if _, ok := predlog.ParsePartName(filepath.Base(o.Key)); !ok {
				continue
			}
			obj, err := mc.GetObject(ctx, s3.Bucket, o.Key, minio.GetObjectOptions{})
			if err != nil {
				return nil, err
			}
			recs, err := readJSONLines(obj)
			obj.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", o.Key, err)
			}
			out = append(out, recs...)
		}
		return out, nil
	}
}

func readJSONLines(r io.Reader) ([]predlog.JSONRecord, error) {
	var out []predlog.JSONRecord
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var rec predlog.JSONRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, sc.Err()
}

// runPredictionLog deploys the registry's diabetes@champion with
// spec.predictionLog.sample 1, sends it REST and gRPC requests with
// request ids, and finds every one of them in the home's prediction log
// (ebb up: files in its data dir; a cluster: objects in S3, uploaded by
// the gateways), with its inputs, outputs, version and status.
func runPredictionLog(t *testing.T, h *home, v1 golden, rows []int) {
	if h.predictions == nil {
		t.Logf("[%s] no prediction log to read: skipping its step", h.name)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const name = "diabetes-log"
	d := serving.Deployment{Name: name, Spec: serving.Spec{Model: "diabetes@champion",
		Scaling:       serving.Scaling{MinReplicas: 0, MaxReplicas: 1, ScaleToZeroAfter: serving.D(4 * time.Second)},
		PredictionLog: &serving.PredictionLog{Sample: 1}}}
	if code, body := h.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("[%s] create deployment %s: %d %s", h.name, name, code, body)
	}
	defer h.cli("delete", "deployment", name)
	h.waitKnown(name)
	if out := h.cli("describe", "deployment", name); !strings.Contains(out, "Prediction log:") || !strings.Contains(out, "100% of requests") {
		t.Errorf("[%s] describe %s shows no prediction log:\n%s", h.name, name, out)
	}

	// The first request waits for the cold start; all are sampled.
	want := map[string]bool{}
	for i := range 3 {
		id := fmt.Sprintf("predlog-%d", i)
		want[id] = true
		k := rows[i%len(rows)]
		if _, code, body, _ := h.inferRowWith(ctx, "/v2/models/"+name+"/infer", v1.Rows[k], map[string]string{"X-Request-Id": id}); code != http.StatusOK {
			t.Fatalf("[%s] request %s to %s: %d %s", h.name, id, name, code, body)
		}
	}
	want["predlog-grpc"] = true
	grpcInferID(t, h, name, "predlog-grpc", v1.Rows[rows[0]])

	// Parts close a second after their first record (the homes' part age
	// in these tests), then ebb up renames them into place and a cluster
	// gateway uploads them.
	var got []predlog.JSONRecord
	deadline := time.Now().Add(90 * time.Second)
	for {
		recs, err := h.predictions()
		got = got[:0]
		for _, r := range recs {
			if r.Deployment == name {
				got = append(got, r)
			}
		}
		if err == nil && len(got) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("[%s] %d records of %s in the prediction log 90s after %d requests (last error %v): %+v", h.name, len(got), name, len(want), err, got)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, r := range got {
		if !want[r.RequestID] {
			t.Errorf("[%s] a record of request %q, which the test did not send", h.name, r.RequestID)
			continue
		}
		delete(want, r.RequestID)
		var in oip.InferRequest
		var out oip.InferResponse
		switch {
		case r.Status != http.StatusOK || r.ModelVersion == "" || r.Tenant == "" || r.LatencyMS <= 0 || r.Time.IsZero():
			t.Errorf("[%s] record %s: status %d, version %q, tenant %q, latency %vms, time %v; want 200 and all set",
				h.name, r.RequestID, r.Status, r.ModelVersion, r.Tenant, r.LatencyMS, r.Time)
		case json.Unmarshal(r.Inputs, &in) != nil || len(in.Inputs) != 1 || in.Inputs[0].Name != "input":
			t.Errorf("[%s] record %s: inputs %s; want the OIP v2 request", h.name, r.RequestID, r.Inputs)
		case json.Unmarshal(r.Outputs, &out) != nil || len(out.Outputs) != 1:
			t.Errorf("[%s] record %s: outputs %s; want the OIP v2 answer", h.name, r.RequestID, r.Outputs)
		}
	}
	if len(want) > 0 {
		t.Errorf("[%s] requests missing from the prediction log: %v", h.name, want)
	}
	t.Logf("[%s] prediction log: %d records of %s, e.g. version %s, tenant %s, %.1fms", h.name, len(got), name, got[0].ModelVersion, got[0].Tenant, got[0].LatencyMS)
}

// grpcInferID sends one row to deployment over gRPC with request id.
func grpcInferID(t *testing.T, h *home, deployment, id string, row []float64) {
	t.Helper()
	cc, err := grpc.NewClient(h.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if h.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+h.token)
	}
	req := &oipgrpc.ModelInferRequest{ModelName: deployment, Id: id}
	in := oip.Tensor{Name: "input", Datatype: oip.FP64, Shape: []int64{1, int64(len(row))}, Data: row}
	if err := oipgrpc.SetInputs(req, []oip.Tensor{in}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := oipgrpc.NewGRPCInferenceServiceClient(cc).ModelInfer(ctx, req); err != nil {
		t.Fatalf("[%s] gRPC infer %s of %s: %v", h.name, id, deployment, err)
	}
}
