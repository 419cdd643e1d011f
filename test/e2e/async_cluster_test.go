package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ebb-ml/ebb/internal/artifact/artifacttest"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/queue/natsq"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/pgtest"
	"github.com/ebb-ml/ebb/internal/store/postgres"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// The crash test of issue 15 in a cluster: the chart's gateways (which run
// the async workers, each draining the shared queue) and the leading
// operator are SIGKILLed while 1,000 async requests they acknowledged are
// queued or in flight. The kubelet restarts the killed containers in their
// pods and the standby operator takes the lead; every acknowledged request
// must end with exactly one result, its own, and none may be lost: checked
// through the gateways and in the queue's store. Once with the queue in
// PostgreSQL, once in NATS JetStream (a real nats-server in this process).

const (
	acRequests = 1000
	// acWorkMs makes the replica slow enough that most requests are still
	// queued when the last of them is acknowledged.
	acWorkMs = 10
	// acLease is the gateways' --async-lease: a request in flight at the
	// kill runs again once it passes.
	acLease = 5 * time.Second
	acDep   = "crash"
)

// asyncStore is one store a cluster's gateways can keep async requests in.
type asyncStore struct {
	name string
	// url readies the store and returns the chart's gateway.async.store;
	// dsn is the registry's PostgreSQL database.
	url func(t *testing.T, dsn string) string
	// open opens the queue at url from the test, for the checks.
	open func(t *testing.T, url string) (q queue.Queue, close func())
}

func asyncStores() []asyncStore {
	return []asyncStore{
		{
			name: "postgres",
			url:  func(_ *testing.T, dsn string) string { return dsn }, // the registry's database, as a platform team would
			open: func(t *testing.T, url string) (queue.Queue, func()) {
				st, err := postgres.Open(t.Context(), url)
				if err != nil {
					t.Fatal(err)
				}
				return st.Queue(sqlstore.QueueOptions{}), func() { st.Close() }
			},
		},
		{
			name: "nats",
			url:  func(t *testing.T, _ string) string { return startNATS(t).ClientURL() },
			open: func(t *testing.T, url string) (queue.Queue, func()) {
				nc, err := nats.Connect(url)
				if err != nil {
					t.Fatal(err)
				}
				q, err := natsq.Open(t.Context(), nc, natsq.Options{})
				if err != nil {
					nc.Close()
					t.Fatal(err)
				}
				return q, nc.Close
			},
		},
	}
}

// startNATS runs a real nats-server with JetStream on a temporary
// directory in this process, on a random loopback port, until the test
// ends (after the chart's pods, whose cleanup runs first).
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// asyncCluster is the chart installed with async on.
type asyncCluster struct {
	h     *home
	rel   *kubetest.Release
	s3    *artifacttest.S3Server
	queue string // the gateways' --async-store
}

// asyncClusterHome installs the chart as clusterHome does (two operators
// with the registry in PostgreSQL, artifacts in S3, two gateways) with the
// gateways' async queue in st, and gatewayArgs (given the S3 server)
// appended to the gateways' arguments.
func asyncClusterHome(t *testing.T, st asyncStore, gatewayArgs func(*artifacttest.S3Server) []string) *asyncCluster {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	c.CreateNodes(t, 1, kubetest.NodeSpec{})
	s3 := artifacttest.StartS3Server(t)
	dsn := pgtest.Start(t)
	store := st.url(t, dsn)
	cs := c.Clientset()
	for name, data := range map[string]map[string]string{
		"ebb-registry": {"dsn": dsn},
		"ebb-s3":       {"AWS_ACCESS_KEY_ID": s3.AccessKey, "AWS_SECRET_ACCESS_KEY": s3.SecretKey},
	} {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
		if _, err := cs.CoreV1().Secrets(ns).Create(t.Context(), sec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var args []string
	if gatewayArgs != nil {
		args = gatewayArgs(s3)
	}
	rel := kubetest.InstallChart(t, c, ns, map[string]any{
		"operator": map[string]any{"replicas": 2, "extraArgs": []string{"--lease-duration=4s", "--renew-deadline=3s", "--retry-period=500ms"}},
		"gateway": map[string]any{"replicas": 2, "endpointsFrom": "pods",
			"async": map[string]any{"store": store}, "extraArgs": args},
		"registry": map[string]any{"type": "postgres", "postgres": map[string]any{"existingSecret": "ebb-registry"}},
		"artifacts": map[string]any{
			"location": fmt.Sprintf("s3://%s/models", s3.Bucket),
			"s3":       map[string]any{"endpoint": s3.Endpoint, "existingSecret": "ebb-s3"},
		},
		"replicas": map[string]any{"artifactCache": map[string]any{"type": "hostPath"}},
	})
	h := &home{t: t, name: "cluster, async in " + st.name, base: "http://" + c.ServiceAddr(ns, rel.Gateway, 8080), token: clusterAdminToken(t, rel)}
	return &asyncCluster{h: h, rel: rel, s3: s3, queue: store}
}

// deployEcho deploys the echo engine as name, burning workMs of CPU per
// prediction, with one replica kept (two at most), and waits until both
// gateways serve it.
func (ac *asyncCluster) deployEcho(t *testing.T, name string, workMs int) {
	t.Helper()
	model := filepath.Join(t.TempDir(), "echo.json")
	sig := fmt.Sprintf(`{"inputs":[{"name":"input","datatype":"FP32","shape":[-1,-1]}],"workMs":%d}`, workMs)
	if err := os.WriteFile(model, []byte(sig), 0o644); err != nil {
		t.Fatal(err)
	}
	d := serving.Deployment{Name: name, Spec: serving.Spec{Engine: "echo", Model: model,
		Scaling: serving.Scaling{MinReplicas: 1, MaxReplicas: 2, ScaleToZeroAfter: serving.D(10 * time.Minute)}}}
	if code, body := ac.h.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("create deployment %s: %d %s", name, code, body)
	}
	ac.h.waitStatus(name, 90*time.Second, "a ready replica", func(st serving.Status) bool { return st.ReadyReplicas >= 1 })
	// Each gateway learns of the deployment from its own watch: a new
	// connection for each request reaches either.
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(60 * time.Second)
	for ok := 0; ok < 10; {
		hr, _ := http.NewRequest(http.MethodPost, ac.h.base+"/v2/models/"+name+"/infer", strings.NewReader(acBody(-1)))
		hr.Header.Set("Content-Type", "application/json")
		hr.Header.Set("Authorization", "Bearer "+ac.h.token)
		code, b := 0, []byte(nil)
		resp, err := c.Do(hr)
		if err == nil {
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			code = resp.StatusCode
		}
		if err == nil && code == http.StatusOK && acAnswers(b, -1) {
			ok++
			continue
		}
		ok = 0
		if time.Now().After(deadline) {
			t.Fatalf("deployment %s not served by both gateways within 60s: %d %s %v", name, code, b, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tenantToken makes a token of tenant that may predict deployment, as a
// user does with ebb tokens create.
func (ac *asyncCluster) tenantToken(t *testing.T, tenant, deployment string) string {
	t.Helper()
	var tok struct {
		Secret string `json:"secret"`
	}
	out := ac.h.cli("tokens", "create", "--scope", "predict:"+deployment, "--name", tenant, "--tenant", tenant, "-o", "json")
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Secret == "" {
		t.Fatalf("ebb tokens create --tenant %s: %v\n%s", tenant, err, out)
	}
	return tok.Secret
}

// acBody is request i's body: its data name it, so that its result shows
// which request it answers.
func acBody(i int) string {
	return fmt.Sprintf(`{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[%d,0.25]}]}`, i)
}

// acAnswers reports whether an echo answer carries request i's data.
func acAnswers(body []byte, i int) bool {
	var r struct {
		Outputs []struct {
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	return json.Unmarshal(body, &r) == nil && len(r.Outputs) == 1 && len(r.Outputs[0].Data) == 2 &&
		r.Outputs[0].Data[0] == float64(i) && r.Outputs[0].Data[1] == 0.25
}

// TestClusterAsyncSurvivesSIGKILL is the crash test of issue 15 in a
// cluster, for each queue store the chart takes.
func TestClusterAsyncSurvivesSIGKILL(t *testing.T) {
	for _, st := range asyncStores() {
		t.Run(st.name, func(t *testing.T) { clusterCrashTest(t, st) })
	}
}

func clusterCrashTest(t *testing.T, st asyncStore) {
	ac := asyncClusterHome(t, st, func(*artifacttest.S3Server) []string { return []string{"--async-lease=" + acLease.String()} })
	ac.deployEcho(t, acDep, acWorkMs)
	tenant := "crash-" + st.name
	token := ac.tenantToken(t, tenant, acDep)

	killed := func() []string { return ac.killAsyncProcesses(t) }
	acked, refused, victims := submitUntil(t, ac.h.base, token, killed)
	t.Logf("%d requests acknowledged (202) when %s were SIGKILLed; %d refused before", len(acked), strings.Join(victims, ", "), refused)
	if refused > 0 {
		t.Errorf("%d submissions were refused before the kill", refused)
	}
	if len(acked) < acRequests {
		t.Fatalf("only %d requests acknowledged, want %d", len(acked), acRequests)
	}

	// Just after the kill (the killed containers restart after the
	// kubelet's back-off): every acknowledged request is in the store, and
	// some have no result yet (else the kill tested nothing).
	q, closeQ := st.open(t, ac.queue)
	defer closeQ()
	before := map[string]time.Time{} // the completion times of those done
	recs := listRecords(t, q, tenant)
	pending := 0
	for id, i := range acked {
		r, ok := recs[id]
		switch {
		case !ok:
			t.Errorf("request %d (%s) was acknowledged but is not in the store", i, id)
		case r.State == queue.Done:
			before[id] = r.Result.CompletedAt
		default:
			pending++
		}
	}
	t.Logf("at the kill: %d done, %d without a result", len(before), pending)
	if pending == 0 {
		t.Fatalf("every request had its result before the kill: make the replica slower (acWorkMs)")
	}

	// Through the restarted gateways: every acknowledged request gets its
	// result, once.
	first := acFetchAll(t, ac.h.base, token, acked, acLease+3*time.Minute)
	again := acFetchAll(t, ac.h.base, token, acked, time.Minute)
	for id, body := range first {
		if !bytes.Equal(body, again[id]) {
			t.Errorf("request %d (%s): result changed between two reads: %s, then %s", acked[id], id, body, again[id])
		}
	}
	// The kubelet restarted each killed container in its pod; an operator
	// leads again.
	for _, v := range victims {
		if ac.restarts(t, v) == 0 {
			t.Errorf("pod %s shows no restart after its SIGKILL", v)
		}
	}
	leader := readyPod(t, kubetest.Get(t).Clientset(), ac.rel.Namespace, ac.rel.OperatorSelector)

	// In the store: one record per acknowledged request, done with its own
	// result; those done before the kill kept the result they had.
	recs = listRecords(t, q, tenant)
	reran, orphans := 0, 0
	for id, r := range recs {
		if r.Attempts > 1 {
			reran++
		}
		_, ack := acked[id]
		switch {
		case r.State == queue.Done:
		case !ack && r.Attempts == 0:
			orphans++ // stored, never acknowledged (the kill cut it off), never queued (NATS)
		default:
			t.Errorf("request %s (acknowledged: %v) is %s after the restart; want done", id, ack, r.State)
		}
	}
	for id, i := range acked {
		if _, ok := recs[id]; !ok {
			t.Errorf("request %d (%s): acknowledged, and gone from the store", i, id)
			continue
		}
		r, err := q.Get(t.Context(), tenant, id) // List leaves the bodies out
		if err != nil || r.Result == nil {
			t.Errorf("request %d (%s): no result in the store: %v", i, id, err)
			continue
		}
		if r.Result.Status != http.StatusOK || !acAnswers(r.Result.Body, i) || !bytes.Equal(r.Result.Body, first[id]) {
			t.Errorf("request %d (%s): stored result %d %s; served %s", i, id, r.Result.Status, r.Result.Body, first[id])
		}
		if b, ok := before[id]; ok && !b.Equal(r.Result.CompletedAt) {
			t.Errorf("request %d (%s): its result, stored at %s before the kill, was replaced by one of %s", i, id, b, r.Result.CompletedAt)
		}
	}
	if depth, err := q.Depth(t.Context(), acDep); err != nil || depth != 0 {
		t.Errorf("queue depth after every result: %d, %v; want 0", depth, err)
	}
	t.Logf("after the restart (operator leader now %s): %d records (%d acknowledged); %d ran more than once; %d unacknowledged never queued",
		leader, len(recs), len(acked), reran, orphans)
}

// listRecords returns tenant's records in q by id, checking that no id
// has two.
func listRecords(t *testing.T, q queue.Queue, tenant string) map[string]queue.Record {
	t.Helper()
	rs, err := q.List(t.Context(), tenant, queue.ListOptions{Limit: 10 * acRequests})
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]queue.Record, len(rs))
	for _, r := range rs {
		if _, dup := out[r.ID]; dup {
			t.Errorf("request %s has two records", r.ID)
		}
		out[r.ID] = r
	}
	return out
}

// killAsyncProcesses SIGKILLs, by PID, the process of the leading
// operator's pod and of every gateway pod (where the async workers run),
// all pods of this test's release, and returns the pods' names.
func (ac *asyncCluster) killAsyncProcesses(t *testing.T) []string {
	t.Helper()
	c := kubetest.Get(t)
	ns := ac.rel.Namespace
	pods := []string{readyPod(t, kubetest.Get(t).Clientset(), ns, ac.rel.OperatorSelector)}
	for _, p := range ac.rel.Pods(t, "gateway") {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p.Name)
		}
	}
	pids := make([]int, len(pods))
	for i, name := range pods {
		p, ok := c.PodProcess(ns, name)
		if !ok || p.PID <= 0 || !strings.HasSuffix(p.Argv[0], "ebb-cluster") {
			t.Fatalf("pod %s/%s has no ebb-cluster process to kill: %+v", ns, name, p)
		}
		pids[i] = p.PID
	}
	for i, pid := range pids {
		err := syscall.Kill(pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			// The process the kubelet last ran for the pod had ended by
			// now (a container restarting, or a pod of a rollout on its
			// way out): kill the one it runs next, if any.
			err = killNext(c, ns, pods[i], pid)
		}
		if err != nil {
			t.Fatalf("SIGKILL pod %s (pid %d): %v", pods[i], pid, err)
		}
	}
	return pods
}

// killNext SIGKILLs the process the kubelet runs for pod after gone, once
// there is one, within 10 s.
func killNext(c *kubetest.Cluster, ns, pod string, gone int) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if p, ok := c.PodProcess(ns, pod); ok && p.PID > 0 && p.PID != gone {
			if err := syscall.Kill(p.PID, syscall.SIGKILL); !errors.Is(err, syscall.ESRCH) {
				return err
			}
			gone = p.PID
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("its process (pid %d) had ended, and no other ran within 10s", gone)
}

// restarts is how often the kubelet restarted pod's container.
func (ac *asyncCluster) restarts(t *testing.T, pod string) int32 {
	t.Helper()
	p, err := kubetest.Get(t).Clientset().CoreV1().Pods(ac.rel.Namespace).Get(t.Context(), pod, metav1.GetOptions{})
	if err != nil || len(p.Status.ContainerStatuses) == 0 {
		t.Fatalf("pod %s: %v", pod, err)
	}
	return p.Status.ContainerStatuses[0].RestartCount
}

// submitUntil submits async requests on 16 connections; once acRequests
// are acknowledged it calls kill while the submitters keep going, so that
// some submissions are cut off mid-way. It returns the acknowledged
// requests (id → index), how many were refused before the kill, and what
// kill returned.
func submitUntil(t *testing.T, base, token string, kill func() []string) (map[string]int, int, []string) {
	var (
		mu      sync.Mutex
		acked   = map[string]int{}
		refused int
		next    atomic.Int64
		killed  atomic.Bool
		wg      sync.WaitGroup
	)
	enough := make(chan struct{})
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer c.CloseIdleConnections()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= 3*acRequests {
					return
				}
				id, code, err := acSubmit(c, base, token, i)
				mu.Lock()
				switch {
				case (err != nil || code != http.StatusAccepted) && killed.Load():
					mu.Unlock()
					return // its gateway is gone
				case err != nil || code != http.StatusAccepted:
					refused++
					if refused == 1 {
						t.Logf("submission %d: %d %v", i, code, err)
					}
				default:
					acked[id] = i
					if len(acked) == acRequests {
						close(enough)
					}
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(3 * time.Minute):
		t.Error("1,000 submissions not acknowledged within 3 minutes")
	}
	killed.Store(true)
	victims := kill()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return acked, refused, victims
}

// acSubmit submits request i with Prefer: respond-async and returns its
// id when acknowledged.
func acSubmit(c *http.Client, base, token string, i int) (string, int, error) {
	hr, err := http.NewRequest(http.MethodPost, base+"/v2/models/"+acDep+"/infer", strings.NewReader(acBody(i)))
	if err != nil {
		return "", 0, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Prefer", "respond-async")
	hr.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(hr)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", 0, err // cut off: not acknowledged
	}
	var st struct {
		ID string `json:"id"`
	}
	if resp.StatusCode == http.StatusAccepted && (json.Unmarshal(b, &st) != nil || st.ID == "") {
		return "", resp.StatusCode, fmt.Errorf("202 without an id: %s", b)
	}
	return st.ID, resp.StatusCode, nil
}

// acFetchAll polls every request's result through the gateways, on 8
// connections, until each has one (or timeout passes), checks that each is
// its own request's answer, and returns them by id. A gateway restarting
// (a refused connection, a 503) is asked again at the next pass.
func acFetchAll(t *testing.T, base, token string, acked map[string]int, timeout time.Duration) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer c.CloseIdleConnections()
	var mu sync.Mutex
	got := map[string][]byte{}
	var lastErr atomic.Value
	left := make([]string, 0, len(acked))
	for id := range acked {
		left = append(left, id)
	}
	for pass := 0; len(left) > 0; pass++ {
		if pass > 0 {
			select {
			case <-ctx.Done():
				t.Fatalf("%d of %d requests have no result after %s (e.g. %s; last error: %v)", len(left), len(acked), timeout, left[0], lastErr.Load())
			case <-time.After(time.Second):
			}
		}
		ids := make(chan string, len(left))
		for _, id := range left {
			ids <- id
		}
		close(ids)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := range ids {
					body, done, err := acResult(ctx, c, base, token, id)
					switch {
					case err != nil && done:
						t.Errorf("request %d (%s): %v", acked[id], id, err)
						continue
					case err != nil:
						lastErr.Store(err.Error())
						continue
					}
					if !done {
						continue
					}
					if !acAnswers(body, acked[id]) {
						t.Errorf("request %d (%s): the result is not its answer: %s", acked[id], id, body)
					}
					mu.Lock()
					got[id] = body
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		left = left[:0]
		for id := range acked {
			if got[id] == nil {
				left = append(left, id)
			}
		}
	}
	return got
}

// acResult asks for id's result: the body once done (the chain's answer
// must have been 200), done false while it is pending. A request that
// fails, or is answered 503, is an error to retry; any other answer is a
// failure of the test.
func acResult(ctx context.Context, c *http.Client, base, token, id string) ([]byte, bool, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/async/"+id, nil)
	if err != nil {
		return nil, false, err
	}
	hr.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(hr)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		return nil, false, err
	case resp.StatusCode == http.StatusAccepted:
		return nil, false, nil
	case resp.StatusCode == http.StatusServiceUnavailable:
		return nil, false, fmt.Errorf("GET /v2/async/%s: %d %s", id, resp.StatusCode, b)
	case resp.StatusCode != http.StatusOK:
		return nil, true, fmt.Errorf("GET /v2/async/%s: %d %s", id, resp.StatusCode, b)
	case resp.Header.Get("Ebb-Result-Status") != "200":
		return nil, true, fmt.Errorf("GET /v2/async/%s: the chain answered %s: %s", id, resp.Header.Get("Ebb-Result-Status"), b)
	}
	return b, true, nil
}
