package faults

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/artifact/artifacttest"
)

// S3Outage stops the S3 server that holds a model's artifact while the
// first requests for the model, at zero replicas, start a cold start, and
// starts it again a few seconds later.
type S3Outage struct{}

func (S3Outage) Name() string  { return "s3-outage" }
func (S3Outage) Title() string { return "9. The S3 server goes down during a cold start" }

// s3Down is how long the S3 server stays down: well under ebb up's hold
// timeout (60 s by default), so requests should be held, not failed.
const s3Down = 5 * time.Second

// s3Bucket and the keys of the S3 server the case starts.
const (
	s3Bucket = "artifacts"
	s3Access = "ebbfaultsaccess"
	s3Secret = "ebbfaultssecret0123456789"
)

func (S3Outage) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	res := harness.Result{Summary: fmt.Sprintf("`ebb up --artifacts s3://%s/ebb` with a real S3 server (versitygw, posix backend, on 127.0.0.1, started by this case). "+
		"The diabetes XGBoost model (examples/diabetes/model.json, 170 kB) is pushed to the registry, so its artifact lives in S3, and a trees deployment of `diabetes:1` is created at zero replicas (0 to 2) with an empty host cache: its first replica must fetch the artifact from S3. "+
		"The S3 server is SIGKILLed by its PID, then a steady load (4 loopback clients, each ≤ 1 request per 20 ms) starts the cold start; %.0f s later the S3 server is started again on the same port and data directory. "+
		"Requests should be held while the replica waits for S3 (the outage is shorter than --hold-timeout, 60 s), and served once S3 answers; no replica may be left over.", s3Bucket, s3Down.Seconds())}
	bin, err := versityGW(ctx, env)
	if err != nil {
		return res, err
	}
	port, err := harness.FreePort()
	if err != nil {
		return res, err
	}
	s3 := &s3Server{bin: bin, addr: fmt.Sprintf("127.0.0.1:%d", port), root: filepath.Join(env.Work, "s3-outage-s3")}
	if err := os.MkdirAll(s3.root, 0o755); err != nil {
		return res, err
	}
	if err := s3.start(ctx, env); err != nil {
		return res, err
	}
	if err := s3.makeBucket(ctx); err != nil {
		return res, err
	}

	m := NewMonitor()
	defer m.Stop()
	b, err := env.StartEbbWith(ctx, harness.EbbOptions{
		Name:  "faults-s3-outage",
		Flags: []string{"--artifacts", "s3://" + s3Bucket + "/ebb"},
		Env:   []string{"EBB_S3_ENDPOINT=http://" + s3.addr, "AWS_ACCESS_KEY_ID=" + s3Access, "AWS_SECRET_ACCESS_KEY=" + s3Secret},
	})
	if err != nil {
		return res, err
	}
	m.WatchEbb(b)
	model := filepath.Join(env.Root, "examples", "diabetes", "model.json")
	if err := pushModel(ctx, env, b, model, "diabetes"); err != nil {
		return res, err
	}
	if err := b.Create(ctx, "cold", harness.DeploymentSpec("trees", "diabetes:1", 0, 2, time.Hour)); err != nil {
		return res, err
	}
	body, err := os.ReadFile(filepath.Join(env.Root, "examples", "diabetes", "request.json"))
	if err != nil {
		return res, err
	}
	d, err := b.Get(ctx, "cold")
	if err != nil {
		return res, err
	}
	if d.Status.Replicas != 0 || len(b.Proc.Tree()) > 1 {
		return res, fmt.Errorf("deployment cold is not at zero before the outage: %d replicas, processes %v", d.Status.Replicas, b.Proc.Tree())
	}
	if n := cachedFiles(filepath.Join(b.DataDir, "cache")); n > 0 {
		return res, fmt.Errorf("the host cache already holds %d file(s) before the cold start: the replica would not fetch from S3", n)
	}

	tDown := time.Now()
	env.Logf("SIGKILL versitygw pid %d", s3.p.PID())
	if err := s3.kill(); err != nil {
		return res, err
	}
	l := StartLoad(ctx, inferURL(b, "cold"), body, 4, 20*time.Millisecond, harness.Pick(env, 4000, 2000), harness.Pick(env, 45*time.Second, 35*time.Second))
	time.Sleep(s3Down)
	if err := s3.start(ctx, env); err != nil {
		l.Stop()
		return res, fmt.Errorf("restart the S3 server: %w", err)
	}
	tUp := time.Now()
	env.Logf("versitygw answers again (pid %d) after %.1f s", s3.p.PID(), tUp.Sub(tDown).Seconds())
	_, tReady, werr := waitReplicas(ctx, m, b, "cold", 1, 45*time.Second)
	time.Sleep(2 * time.Second)
	// Replica processes now running under ebb up, and the ready ones.
	running := len(b.Proc.Tree()) - 1
	rs, _ := readyReplicas(ctx, b, "cold")
	l.Stop()
	d, _ = b.Get(ctx, "cold")

	all := l.Stats(time.Time{}, time.Time{})
	firstOK := l.FirstOKAfter(tDown)
	served := 0.0
	if !firstOK.IsZero() {
		served = secs(firstOK.Sub(tUp))
	}
	retries := countInLogs(filepath.Join(b.DataDir, "logs"), "model fetch failed; retrying")
	_, _, _, started := m.Peaks()
	res.Figures = map[string]float64{
		"requests": float64(all.OK + all.Failed), "failed": float64(all.Failed),
		"s3DownSeconds":        secs(tUp.Sub(tDown)),
		"firstAnswerAfterS3Up": served,
		"longestAnswerMs":      harness.Ms(all.MaxLatency),
		"replicasSeen":         float64(started),
		"fetchRetries":         float64(retries),
	}
	if werr == nil {
		res.Figures["readyAfterS3UpSeconds"] = secs(tReady.Sub(tUp))
	}
	res.Tables = append(res.Tables, loadTable("Requests by when they were sent",
		[2]any{fmt.Sprintf("S3 down (%.1f s)", secs(tUp.Sub(tDown))), l.Stats(tDown, tUp)},
		[2]any{"S3 back", l.Stats(tUp, time.Time{})}))
	detail := fmt.Sprintf("%d of %d requests failed (%s); the longest answer took %.0f ms", all.Failed, all.OK+all.Failed, all.codes(), harness.Ms(all.MaxLatency))
	if all.FirstError != "" {
		detail += "; first: " + all.FirstError
	}
	servedDetail := fmt.Sprintf("first 200 %.2f s after S3 answered again", served)
	if firstOK.IsZero() {
		servedDetail = "no 200 after S3 came back"
	}
	if werr != nil {
		servedDetail += "; " + werr.Error()
	} else {
		servedDetail += fmt.Sprintf("; a ready replica %.2f s after", secs(tReady.Sub(tUp)))
	}
	leakDetail := fmt.Sprintf("%d replica process(es) running under ebb up, %d ready (%d seen in all by the 100 ms sampler, %d fetch retries logged by replicas); status.failure %q",
		running, len(rs), started, retries, d.Status.Failure)
	res.Goals = append(res.Goals,
		goal("failed requests", fmt.Sprintf("0 (held: S3 down %.0f s, under the 60 s hold timeout)", s3Down.Seconds()), float64(all.Failed), "requests", all.Failed == 0 && all.OK > 0, detail),
		goal("served once S3 is back", "a 200 within 10 s of S3 answering", served, "s", !firstOK.IsZero() && served <= 10, servedDetail),
		goal("no leaked replicas", "every replica process running is ready, ≤ 2 (maxReplicas), deployment not failed", float64(running), "processes",
			werr == nil && running == len(rs) && running >= 1 && running <= 2 && d.Status.Failure == "", leakDetail),
	)
	res.Notes = append(res.Notes, fmt.Sprintf("Replicas retry a fetch that fails because the artifact store is unreachable (or answers 5xx) with backoff (250 ms doubling to 2 s) for `ebb replica --fetch-retry-for` (1 min by default), instead of exiting: %d retries were logged. A missing or corrupt artifact is not retried. Without these retries a replica exited at once, three failed starts in a row (about 2 s with the control loop's restart backoff) failed the deployment, and the held requests got 503 until S3 was back.", retries))
	rssFigures(&res, m)
	g, _ := leftoverGoal(env, m)
	res.Goals = append(res.Goals, g)
	return res, nil
}

// s3Server is a versitygw process the case starts, stops and starts again
// on the same address and data directory.
type s3Server struct {
	bin, addr, root string
	p               *harness.Proc
}

// start runs versitygw and waits until it answers HTTP.
func (s *s3Server) start(ctx context.Context, env *harness.Env) error {
	p, err := env.Start(harness.StartOptions{Name: "versitygw", Dir: s.root},
		s.bin, "--port", s.addr, "--access", s3Access, "--secret", s3Secret, "--quiet", "posix", s.root)
	if err != nil {
		return err
	}
	s.p = p
	c := &http.Client{Timeout: time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr+"/", nil)
		if err != nil {
			return err
		}
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			return nil // any answer: 403 without credentials
		}
		select {
		case <-p.Done():
			return fmt.Errorf("versitygw exited before it answered on %s; log tail:\n%s", s.addr, p.LogTail(2000))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw did not answer on %s within 20 s; log tail:\n%s", s.addr, p.LogTail(2000))
		}
	}
}

// kill SIGKILLs the server by its PID and waits for it to exit.
func (s *s3Server) kill() error {
	if err := syscall.Kill(s.p.PID(), syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill versitygw %d: %w", s.p.PID(), err)
	}
	<-s.p.Done()
	return nil
}

func (s *s3Server) makeBucket(ctx context.Context) error {
	c, err := minio.New(s.addr, &minio.Options{Creds: credentials.NewStaticV4(s3Access, s3Secret, "")})
	if err != nil {
		return err
	}
	if err := c.MakeBucket(ctx, s3Bucket, minio.MakeBucketOptions{}); err != nil {
		return fmt.Errorf("create bucket %s: %w", s3Bucket, err)
	}
	return nil
}

// versityGW returns the versitygw binary, building it with
// hack/install-versitygw.sh (once; cached) when it is not installed.
func versityGW(ctx context.Context, env *harness.Env) (string, error) {
	if p, ok := artifacttest.VersityGWPath(); ok {
		return p, nil
	}
	env.Logf("versitygw is not installed; building it with hack/install-versitygw.sh")
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(env.Root, "hack", "install-versitygw.sh"))
	cmd.Dir, cmd.Stderr = env.Root, &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("versitygw is not installed and hack/install-versitygw.sh failed (%v): %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// pushModel pushes a model file to ebb's registry with `ebb models push`.
func pushModel(ctx context.Context, env *harness.Env, b *harness.Ebb, path, name string) error {
	args := []string{"models", "push", path, "--name", name, "--server", b.URL}
	if b.Token != "" {
		args = append(args, "--token", b.Token)
	}
	out, err := exec.CommandContext(ctx, env.Ebb, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ebb models push %s: %v: %s", path, err, bytes.TrimSpace(out))
	}
	return nil
}

// cachedFiles counts the regular files under dir.
func cachedFiles(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// countInLogs counts the lines that contain s in the files of dir.
func countInLogs(dir, s string) int {
	entries, _ := os.ReadDir(dir)
	n := 0
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err == nil {
			n += strings.Count(string(b), s)
		}
	}
	return n
}
