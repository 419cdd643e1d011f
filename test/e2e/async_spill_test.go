package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/ebb-ml/ebb/internal/artifact/artifacttest"
	"github.com/ebb-ml/ebb/internal/artifact/s3"
	"github.com/ebb-ml/ebb/internal/queue"
)

// spillValues is how many FP32 values the large async request carries:
// about 1.2 MB of JSON, over the queue's inline limit (256 KiB) and over
// the largest message a NATS server takes by default (1 MiB), so that on
// NATS the request could not be stored at all without the spill.
const spillValues = 200_000

// TestClusterAsyncSpillsToS3: with the chart's gateways spilling to the
// artifacts' bucket (its default there), an async request whose body is
// over the inline limit is stored in S3 and only its URI in the queue's
// store; so is its result, which comes back whole and correct through the
// gateways. A small request stays inline. The sweep that deletes a record
// once its result TTL has passed deletes both objects with it. For each
// queue store the chart takes.
func TestClusterAsyncSpillsToS3(t *testing.T) {
	for _, st := range asyncStores() {
		t.Run(st.name, func(t *testing.T) { clusterSpillTest(t, st) })
	}
}

func clusterSpillTest(t *testing.T, st asyncStore) {
	// No extra flags: with artifacts in S3 the chart gives the gateways
	// (and the operator's jobs) --async-payloads=s3://BUCKET/async.
	ac := asyncClusterHome(t, st, nil)
	const dep = "spill"
	ac.deployEcho(t, dep, 0)
	tenant := "spill-" + st.name
	token := ac.tenantToken(t, tenant, dep)

	data := make([]float64, spillValues)
	for i := range data {
		data[i] = float64(i%1000) + 0.5 // exact in FP32
	}
	in, _ := json.Marshal(data)
	big := fmt.Sprintf(`{"inputs":[{"name":"input","shape":[1,%d],"datatype":"FP32","data":%s}]}`, len(data), in)
	if len(big) <= queue.DefaultInlineMax || len(big) <= 1<<20 {
		t.Fatalf("the large body is %d bytes: not over the inline limit and NATS's", len(big))
	}
	c := &http.Client{Timeout: time.Minute}
	bigID := spillSubmit(t, c, ac.h.base, token, dep, big)
	smallID := spillSubmit(t, c, ac.h.base, token, dep, acBody(7))

	out := spillResult(t, c, ac.h.base, token, bigID)
	var answer struct {
		Outputs []struct {
			Shape []int     `json:"shape"`
			Data  []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(out, &answer); err != nil || len(answer.Outputs) != 1 || !slices.Equal(answer.Outputs[0].Data, data) {
		t.Fatalf("the large request's result (%d bytes, %v) does not echo its %d values", len(out), err, len(data))
	}
	if small := spillResult(t, c, ac.h.base, token, smallID); !acAnswers(small, 7) {
		t.Errorf("the small request's result: %s", small)
	}

	// In the bucket: the large request's body and its result, framed with
	// its id; nothing of the small one.
	objs := asyncObjects(t, ac.s3)
	if got := objs[bigID]; !slices.Equal(got, []string{"request", "result"}) {
		t.Errorf("objects of the large request under async/: %q; want its request and its result (all: %v)", got, objs)
	}
	if got := objs[smallID]; len(got) > 0 {
		t.Errorf("objects of the small request under async/: %q; want none (kept inline)", got)
	}

	// In the queue's store: the large result is its URI, not its bytes.
	q, closeQ := st.open(t, ac.queue)
	defer closeQ()
	prefix := "s3://" + ac.s3.Bucket + "/async/"
	if rec, err := q.Get(t.Context(), tenant, bigID); err != nil || rec.Result == nil ||
		!strings.HasPrefix(rec.Result.BodyRef, prefix) || len(rec.Result.Body) != 0 {
		t.Errorf("the large request's record in the queue's store: %v; want its result as a URI under %s and no body", err, prefix)
	}
	if rec, err := q.Get(t.Context(), tenant, smallID); err != nil || rec.Result == nil || rec.Result.BodyRef != "" || !acAnswers(rec.Result.Body, 7) {
		t.Errorf("the small request's record in the queue's store: %v; want its result inline", err)
	}

	// Swept as the gateways' workers sweep once the records expired (the
	// result TTL, a day, after completion): the objects go with them.
	blobs, err := s3.New("s3://"+ac.s3.Bucket+"/async", s3.Options{Endpoint: ac.s3.Endpoint,
		AccessKey: ac.s3.AccessKey, SecretKey: ac.s3.SecretKey, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	sw, err := queue.NewSpilling(q, blobs, 0).DeleteExpired(t.Context(), time.Now().Add(49*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get(t.Context(), tenant, bigID); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("the large request after the sweep: %v; want not found", err)
	}
	if left := asyncObjects(t, ac.s3); len(left) > 0 {
		t.Errorf("objects left under async/ after the sweep of %d records: %v", sw.Records, left)
	}
	t.Logf("a %d-byte async request and its result went to %s in S3, and were deleted with their record; %d records swept", len(big), prefix, sw.Records)
}

// spillSubmit submits body to dep with Prefer: respond-async and returns
// the id of the 202.
func spillSubmit(t *testing.T, c *http.Client, base, token, dep, body string) string {
	t.Helper()
	hr, _ := http.NewRequest(http.MethodPost, base+"/v2/models/"+dep+"/infer", strings.NewReader(body))
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Prefer", "respond-async")
	hr.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var st struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(b, &st) != nil || st.ID == "" {
		t.Fatalf("async submit of %d bytes: %d %s", len(body), resp.StatusCode, b)
	}
	return st.ID
}

// spillResult waits (Prefer: wait) for id's result, which must be the
// chain's 200, and returns its body.
func spillResult(t *testing.T, c *http.Client, base, token, id string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for {
		hr, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/async/"+id, nil)
		hr.Header.Set("Authorization", "Bearer "+token)
		hr.Header.Set("Prefer", "wait=10")
		resp, err := c.Do(hr)
		if err != nil {
			t.Fatalf("GET /v2/async/%s: %v", id, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusAccepted:
			continue
		case resp.StatusCode != http.StatusOK || resp.Header.Get("Ebb-Result-Status") != "200":
			t.Fatalf("GET /v2/async/%s: %d (result %s) %.300s", id, resp.StatusCode, resp.Header.Get("Ebb-Result-Status"), b)
		}
		return b
	}
}

// asyncObjects lists the objects under async/ in the S3 server's bucket by
// the request id their frame names, with their kinds (request, result)
// sorted.
func asyncObjects(t *testing.T, srv *artifacttest.S3Server) map[string][]string {
	t.Helper()
	mc, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	out := map[string][]string{}
	for o := range mc.ListObjects(ctx, srv.Bucket, minio.ListObjectsOptions{Prefix: "async/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		obj, err := mc.GetObject(ctx, srv.Bucket, o.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(obj).ReadString('\n')
		obj.Close()
		f := strings.Fields(line)
		if err != nil || len(f) != 4 || f[0] != "ebb-async" {
			t.Errorf("object %s is not an async payload: %q %v", o.Key, line, err)
			continue
		}
		out[f[1]] = append(out[f[1]], f[2])
	}
	for _, kinds := range out {
		slices.Sort(kinds)
	}
	return out
}
