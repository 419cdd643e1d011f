package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/serving"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// apiserverDown is how long the apiserver process stays down. Clients see
// it gone for that plus its start (2-4 s here), which must stay under the
// operator's leader-election renew deadline (10 s by default, renewed every
// 2 s) for the leader to keep its lease. A longer outage makes the leader
// step down and its process exit (the pod restarts) by design: it cannot
// tell an outage from a partition in which another operator leads.
const apiserverDown = 3 * time.Second

// TestAPIServerRestart is the fault suite's cluster case (APIServerRestart
// runs it and reads its result from $EBB_FAULTS_RESULT): the Helm chart in
// the test cluster (internal/kubetest), a warm echo deployment of 2
// replica pods under a steady load through the gateway Service, and the
// kube-apiserver SIGKILLed and started again 3 s later. The data plane must
// not notice (0 failed requests), the control plane must work again (a
// scale to 3 is reconciled), and the operator and gateway processes must
// not restart. Without the cluster's binaries it skips, or fails when
// CI=true (kubetest.Get); it takes about a minute.
func TestAPIServerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster; skipped with -short")
	}
	c := kubetest.Get(t)
	quick := os.Getenv("EBB_FAULTS_RESULT") == "" || os.Getenv("EBB_FAULTS_QUICK") != ""
	res, err := apiserverRestart(t, c, quick)
	if out := os.Getenv("EBB_FAULTS_RESULT"); out != "" {
		r := caseResult{Result: res}
		if err != nil {
			r.Error = err.Error()
		}
		b, _ := json.MarshalIndent(r, "", "  ")
		if werr := os.WriteFile(out, b, 0o644); werr != nil {
			t.Errorf("write %s: %v", out, werr)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Goals) == 0 {
		t.Fatal("no goals reported")
	}
	for _, n := range res.Notes {
		t.Log(n)
	}
	for _, g := range res.Goals {
		t.Logf("goal %-36s %-7s %s", g.Name, map[bool]string{true: "MET", false: "NOT MET"}[g.Met], g.Detail)
		if !g.Met {
			t.Errorf("goal %q (%s) not met: %s", g.Name, g.Target, g.Detail)
		}
	}
}

// podProc is a pod and the process the fake kubelet runs for it.
type podProc struct {
	Name     string
	PID      int
	Restarts int32
}

func podProcs(ctx context.Context, c *kubetest.Cluster, ns, selector string) ([]podProc, error) {
	pods, err := c.Clientset().CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	var out []podProc
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		pp := podProc{Name: p.Name}
		if proc, ok := c.PodProcess(ns, p.Name); ok {
			pp.PID = proc.PID
		}
		for _, cs := range p.Status.ContainerStatuses {
			pp.Restarts += cs.RestartCount
		}
		out = append(out, pp)
	}
	slices.SortFunc(out, func(a, b podProc) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func apiserverRestart(t *testing.T, c *kubetest.Cluster, quick bool) (harness.Result, error) {
	res := harness.Result{Summary: fmt.Sprintf("The Helm chart (deploy/helm/ebb, its defaults: 1 operator with leader election, 2 gateways, the registry in SQLite on a volume) installed in the test cluster (internal/kubetest: a real kube-apiserver and etcd, kwok nodes, the operator, gateway and replica pods run as local processes by kubetest's fake kubelet). "+
		"An echo deployment with 2 replica pods takes a steady load through the gateway Service (4 loopback clients, each ≤ 1 request per 20 ms, with the admin token). "+
		"The kube-apiserver process is SIGKILLed by its PID and started again %.0f s later with the same flags, certificates and etcd (whose data are kept). "+
		"The data plane of a warm deployment must not depend on the apiserver: no request may fail. Once the apiserver answers /readyz, the deployment is scaled to 3 through the admin API: the time until 3 replicas are ready is the time until the control plane works again. The operator and gateway processes must not restart.", apiserverDown.Seconds())}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cs := c.Clientset()
	ns := c.Namespace(t)
	c.CreateNodes(t, 1, kubetest.NodeSpec{Prefix: "faults"})
	began := time.Now()
	rel := kubetest.InstallChart(t, c, ns, map[string]any{"gateway": map[string]any{"endpointsFrom": "pods"}})
	installed := time.Since(began)
	token, err := chartAdminToken(ctx, cs, rel)
	if err != nil {
		return res, err
	}
	a := &adminClient{base: "http://" + c.ServiceAddr(ns, rel.Gateway, 8080), token: token}
	spec := harness.DeploymentSpec("echo", "", 2, 2, time.Hour)
	if code, body, err := a.do(ctx, http.MethodPost, "/v1/deployments", "application/json", map[string]any{"name": "warm", "spec": spec}); err != nil || code != http.StatusCreated {
		return res, fmt.Errorf("create deployment warm: HTTP %d %s (%v)", code, body, err)
	}
	if _, err := a.waitReady(ctx, "warm", 2, 90*time.Second); err != nil {
		return res, err
	}
	replicaSel := "serving.ebb.dev/deployment=warm"
	m := NewMonitor()
	defer m.Stop()
	watch := func(role, selector string) ([]podProc, error) {
		ps, err := podProcs(ctx, c, ns, selector)
		for _, p := range ps {
			if p.PID > 0 {
				m.WatchProcess(p.PID, role, "")
			}
		}
		return ps, err
	}
	ops, err := watch("operator", rel.OperatorSelector)
	if err != nil {
		return res, err
	}
	gws, err := watch("gateway", rel.GatewaySelector)
	if err != nil {
		return res, err
	}
	reps, err := watch("replica", replicaSel)
	if err != nil {
		return res, err
	}

	l := StartLoadWithToken(ctx, a.base+"/v2/models/warm/infer", token, inferBody, 4, 20*time.Millisecond,
		harness.Pick(&harness.Env{Quick: quick}, 20000, 10000), 2*time.Minute)
	time.Sleep(2 * time.Second)
	r, rerr := c.RestartAPIServer(ctx, kubetest.RestartOptions{DownFor: apiserverDown, Kill: true})
	if rerr != nil {
		l.Stop()
		return res, rerr
	}
	t.Logf("apiserver pid %d killed; pid %d ready %s later", r.OldPID, r.NewPID, r.Ready.Sub(r.Stopped).Round(time.Millisecond))
	res.Notes = append(res.Notes, fmt.Sprintf("The apiserver was gone for %.1f s (the kill to /readyz: %.0f s down, then its start). That is under the operator's leader-election renew deadline (10 s, the chart's default), so the leader kept its lease. A longer outage makes the leader step down and its process exit, and the pod restart, by design: it cannot tell an outage from a partition in which another operator leads.",
		secs(r.Ready.Sub(r.Stopped)), apiserverDown.Seconds()))

	// The control plane: a scale change made through the admin API after
	// the restart is reconciled.
	patch := map[string]any{"spec": map[string]any{"scaling": map[string]any{"minReplicas": 3, "maxReplicas": 3}}}
	var tPatched time.Time
	var lastPatch string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		code, body, err := a.do(ctx, http.MethodPatch, "/v1/deployments/warm", "application/merge-patch+json", patch)
		if err == nil && code == http.StatusOK {
			tPatched = time.Now()
			break
		}
		lastPatch = fmt.Sprintf("HTTP %d %.300s (%v)", code, body, err)
	}
	var tScaled time.Time
	var serr error
	if !tPatched.IsZero() {
		_, serr = a.waitReady(ctx, "warm", 3, 90*time.Second)
		if serr == nil {
			tScaled = time.Now()
		}
	} else {
		serr = fmt.Errorf("the scale to 3 was refused for 60 s after the restart; last answer: %s", lastPatch)
	}
	time.Sleep(2 * time.Second)
	l.Stop()
	reps2, _ := watch("replica", replicaSel)
	// Where the scale's time went: the operator creating the pod, the
	// scheduler binding it, the (fake) kubelet starting it, readiness.
	if pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: replicaSel}); err == nil && !tPatched.IsZero() {
		for _, p := range pods.Items {
			if p.CreationTimestamp.Time.Before(r.Stopped) {
				continue
			}
			res.Notes = append(res.Notes, "The replica pod the scale to 3 added: "+podTimeline(&p, r.Ready))
		}
		for _, op := range ops {
			if line := operatorTimeline(c.PodLog(ns, op.Name), "warm", r.Ready); line != "" {
				res.Notes = append(res.Notes, "The operator's log, after /readyz: "+line+
					". The operator acts on a change once its informers' watches are back: client-go's reflector retries a failed list or watch after 0.8 s, doubling up to 30 s, each wait stretched by up to 2× (jitter), so after an outage of a few seconds its watches can return some seconds after the apiserver does.")
			}
		}
	}
	ops2, _ := podProcs(ctx, c, ns, rel.OperatorSelector)
	gws2, _ := podProcs(ctx, c, ns, rel.GatewaySelector)

	all := l.Stats(time.Time{}, time.Time{})
	res.Figures = map[string]float64{
		"requests": float64(all.OK + all.Failed), "failed": float64(all.Failed),
		"apiserverDownSeconds":  secs(r.Ready.Sub(r.Stopped)),
		"apiserverStartSeconds": secs(r.Ready.Sub(r.Started)),
		"chartInstallSeconds":   installed.Seconds(),
		"longestAnswerMs":       harness.Ms(all.MaxLatency),
	}
	controlBack := 0.0
	if serr == nil {
		controlBack = secs(tScaled.Sub(r.Ready))
		res.Figures["scaleReconciledSeconds"] = controlBack
		res.Figures["scaleAcceptedSeconds"] = secs(tPatched.Sub(r.Ready))
	}
	res.Tables = append(res.Tables, loadTable("Requests to the warm deployment by when they were sent",
		[2]any{"before the kill", l.Stats(time.Time{}, r.Stopped)},
		[2]any{fmt.Sprintf("apiserver down or starting (%.1f s)", secs(r.Ready.Sub(r.Stopped))), l.Stats(r.Stopped, r.Ready)},
		[2]any{"after /readyz", l.Stats(r.Ready, time.Time{})}))
	pt := harness.Table{Caption: "Operator, gateway and replica pods before and after (PID of the process the fake kubelet runs; container restarts)", Header: []string{"Role", "Before", "After"}}
	for _, row := range []struct {
		role          string
		before, after []podProc
	}{{"operator", ops, ops2}, {"gateway", gws, gws2}, {"replica", reps, reps2}} {
		pt.Rows = append(pt.Rows, []string{row.role, describePods(row.before), describePods(row.after)})
	}
	res.Tables = append(res.Tables, pt)

	detail := fmt.Sprintf("%d of %d requests failed (%s); the longest answer took %.0f ms", all.Failed, all.OK+all.Failed, all.codes(), harness.Ms(all.MaxLatency))
	if all.FirstError != "" {
		detail += "; first: " + all.FirstError
	}
	ctlDetail := fmt.Sprintf("the apiserver answered /readyz %.1f s after the kill (%.1f s after its start); the scale to 3 was accepted %.2f s later and 3 replicas were ready %.2f s after /readyz",
		secs(r.Ready.Sub(r.Stopped)), secs(r.Ready.Sub(r.Started)), secs(tPatched.Sub(r.Ready)), controlBack)
	if serr != nil {
		ctlDetail = serr.Error()
	}
	same := func(a, b []podProc) bool {
		return len(a) > 0 && slices.EqualFunc(a, b, func(x, y podProc) bool { return x == y && x.PID > 0 })
	}
	stable := same(ops, ops2) && same(gws, gws2)
	kept := 0
	for _, p := range reps {
		if slices.Contains(reps2, p) {
			kept++
		}
	}
	res.Goals = append(res.Goals,
		goal("failed requests", "0 (the data plane of a warm deployment does not need the apiserver)", float64(all.Failed), "requests", all.Failed == 0 && all.OK > 0, detail),
		goal("control plane back", "a scale 2 → 3 reconciled within 60 s of /readyz", controlBack, "s", serr == nil && controlBack <= 60, ctlDetail),
		goal("no crash loop", "operator and gateway pods keep their processes, 0 restarts", float64(len(ops2)+len(gws2)), "pods", stable,
			fmt.Sprintf("operator %s → %s; gateways %s → %s", describePods(ops), describePods(ops2), describePods(gws), describePods(gws2))),
		goal("no duplicate replicas", "3 replica pods, the 2 first ones kept", float64(len(reps2)), "pods", len(reps2) == 3 && kept == len(reps) && len(reps) == 2,
			fmt.Sprintf("before %s; after %s", describePods(reps), describePods(reps2))),
	)

	// Nothing left behind: deleting the deployment removes its pods and
	// their processes.
	if code, body, err := a.do(ctx, http.MethodDelete, "/v1/deployments/warm", "", nil); err != nil || code/100 != 2 {
		return res, fmt.Errorf("delete deployment warm: HTTP %d %s (%v)", code, body, err)
	}
	left := waitPodsGone(ctx, cs, ns, replicaSel, reps2, 60*time.Second)
	leftDetail := "every replica pod and process of the deployment is gone"
	if len(left) > 0 {
		leftDetail = strings.Join(left, "; ")
	}
	res.Goals = append(res.Goals, goal("nothing left behind", "0 replica pods or processes 60 s after the deployment is deleted", float64(len(left)), "leftovers", len(left) == 0, leftDetail))
	peak, n := m.PeakByRole()
	for role, p := range peak {
		res.Figures["rss."+role+".peakMiB"] = harness.MiB(p)
		res.Figures["processes."+role] = float64(n[role])
	}
	res.Tables = append(res.Tables, m.Table())
	m.Stop()
	return res, nil
}

// podTimeline says when, after t0, the pod was created, scheduled, started
// and ready (Kubernetes stores these times to the second).
func podTimeline(p *corev1.Pod, t0 time.Time) string {
	at := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return fmt.Sprintf("%.0f s", t.Sub(t0).Seconds())
	}
	var scheduled, ready, started time.Time
	for _, c := range p.Status.Conditions {
		switch c.Type {
		case corev1.PodScheduled:
			scheduled = c.LastTransitionTime.Time
		case corev1.PodReady:
			if c.Status == corev1.ConditionTrue {
				ready = c.LastTransitionTime.Time
			}
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running != nil {
			started = cs.State.Running.StartedAt.Time
		}
	}
	return fmt.Sprintf("%s created %s after /readyz, scheduled at %s, its container started at %s, ready at %s (times in whole seconds, as the API keeps them)",
		p.Name, at(p.CreationTimestamp.Time), at(scheduled), at(started), at(ready))
}

// operatorTimeline picks from an operator's JSON log the times, after t0,
// at which it recorded a patch of deployment and started its replicas.
func operatorTimeline(path, deployment string, t0 time.Time) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var parts []string
	for _, line := range strings.Split(string(b), "\n") {
		var e struct {
			Time       time.Time `json:"time"`
			Msg        string    `json:"msg"`
			Deployment string    `json:"deployment"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Deployment != deployment || e.Time.Before(t0) {
			continue
		}
		switch e.Msg {
		case "deployment patched", "scale", "starting replica", "replica ready":
			parts = append(parts, fmt.Sprintf("%q at %.2f s", e.Msg, e.Time.Sub(t0).Seconds()))
		}
	}
	return strings.Join(parts, ", ")
}

func describePods(ps []podProc) string {
	if len(ps) == 0 {
		return "none"
	}
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s (pid %d, %d restarts)", p.Name, p.PID, p.Restarts))
	}
	return strings.Join(parts, ", ")
}

// waitPodsGone waits until no pod matches selector and the processes of
// ps have exited; it returns what is left.
func waitPodsGone(ctx context.Context, cs kubernetes.Interface, ns, selector string, ps []podProc, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		var left []string
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			left = append(left, "list pods: "+err.Error())
		} else {
			for _, p := range pods.Items {
				left = append(left, "pod "+p.Name)
			}
		}
		for _, p := range ps {
			if p.PID > 0 {
				if f, err := statFields(p.PID); err == nil && f[0] != "Z" && f[0] != "X" {
					left = append(left, fmt.Sprintf("process %d (pod %s)", p.PID, p.Name))
				}
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// adminClient talks to the admin API through the gateway.
type adminClient struct {
	base, token string
}

func (a *adminClient) do(ctx context.Context, method, path, contentType string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// waitReady polls the deployment until it has n ready replicas.
func (a *adminClient) waitReady(ctx context.Context, name string, n int32, timeout time.Duration) (serving.Deployment, error) {
	deadline := time.Now().Add(timeout)
	var d serving.Deployment
	var last string
	for {
		code, body, err := a.do(ctx, http.MethodGet, "/v1/deployments/"+name, "", nil)
		if err == nil && code == http.StatusOK && json.Unmarshal(body, &d) == nil && d.Status.ReadyReplicas >= n {
			return d, nil
		}
		last = fmt.Sprintf("HTTP %d %.300s (%v)", code, body, err)
		if time.Now().After(deadline) || ctx.Err() != nil {
			return d, fmt.Errorf("deployment %s: not %d ready replicas within %s; last answer: %s", name, n, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// chartAdminToken reads the admin token the operator keeps in the Secret
// its --admin-token-secret names, as a user does with kubectl.
func chartAdminToken(ctx context.Context, cs kubernetes.Interface, rel *kubetest.Release) (string, error) {
	var name string
	for _, o := range rel.Objects {
		if o.GetKind() != "Deployment" || o.GetName() != rel.Operator {
			continue
		}
		ctrs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for _, c := range ctrs {
			args, _, _ := unstructured.NestedStringSlice(c.(map[string]any), "args")
			for _, a := range args {
				if v, ok := strings.CutPrefix(a, "--admin-token-secret="); ok {
					name = v
				}
			}
		}
	}
	if name == "" {
		return "", fmt.Errorf("the operator has no --admin-token-secret: is auth off in the chart?")
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var sec *corev1.Secret
		sec, err := cs.CoreV1().Secrets(rel.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil && len(sec.Data["token"]) > 0 {
			return strings.TrimSpace(string(sec.Data["token"])), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no token in Secret %s/%s: %v", rel.Namespace, name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
