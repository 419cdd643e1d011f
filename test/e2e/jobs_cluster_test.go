package e2e

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/serving"
)

// TestJobsCluster runs the example batch job (examples/jobs) in the
// cluster, as TestJobsUp runs it in ebb up: its input and output in S3,
// submitted through the gateways' admin API; the leading operator plans
// it and sends its chunks through the gateways' async queue (PostgreSQL)
// to replicas of its own. The output must equal the model's predictions
// row for row, the job's own deployment must be gone afterwards, and the
// job must show as a ModelJob that kubectl reads (`ebb jobs get` here).
func TestJobsCluster(t *testing.T) {
	ac := asyncClusterHome(t, asyncStores()[0], nil)
	mc, err := ac.s3.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc.FPutObject(t.Context(), ac.s3.Bucket, "jobs/diabetes.csv", "../../examples/jobs/diabetes.csv", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	j := exampleJob(t, "s3://"+ac.s3.Bucket+"/jobs/diabetes-scores.csv")
	j.Spec.Input.URI = "s3://" + ac.s3.Bucket + "/jobs/diabetes.csv"
	if code, body := ac.h.do(http.MethodPost, "/v1/jobs", j, nil); code != http.StatusCreated {
		t.Fatalf("POST /v1/jobs: %d %s", code, body)
	}
	var got serving.Job
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if code, body := ac.h.do(http.MethodGet, "/v1/jobs/"+j.Name, nil, &got); code != http.StatusOK {
			t.Fatalf("GET /v1/jobs/%s: %d %s", j.Name, code, body)
		}
		if serving.JobFinished(got.Status.Phase) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after 3m: %s", j.Name, got.Status.Phase, got.Status.Message)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got.Status.Phase != serving.JobSucceeded || got.Status.RowsDone != 50 {
		t.Fatalf("job %s (%s), %d rows; want Succeeded, 50", got.Status.Phase, got.Status.Message, got.Status.RowsDone)
	}
	out := filepath.Join(t.TempDir(), "diabetes-scores.csv")
	if err := mc.FGetObject(t.Context(), ac.s3.Bucket, "jobs/diabetes-scores.csv", out, minio.GetObjectOptions{}); err != nil {
		t.Fatalf("the job's output in S3: %v", err)
	}
	model, err := trees.Load("../../examples/diabetes/model.json")
	if err != nil {
		t.Fatal(err)
	}
	checkJobOutput(t, model, "../../examples/jobs/diabetes.csv", out)
	if code, _ := ac.h.do(http.MethodGet, "/v1/deployments/job-"+j.Name, nil, nil); code != http.StatusNotFound {
		t.Errorf("the job's own deployment after the job: %d; want 404 (deleted)", code)
	}
	// The leader shows API-submitted jobs as ModelJobs (operator.JobSync),
	// which kubectl reads.
	scheme, err := operator.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kubetest.Get(t).NewClient(scheme)
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		var mj v1alpha1.ModelJob
		err := kc.Get(t.Context(), client.ObjectKey{Namespace: ac.rel.Namespace, Name: j.Name}, &mj)
		if err == nil && mj.Status.Phase == serving.JobSucceeded && mj.Status.RowsDone == 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ModelJob %s: phase %q, %d rows, %v; want Succeeded with 50", j.Name, mj.Status.Phase, mj.Status.RowsDone, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
