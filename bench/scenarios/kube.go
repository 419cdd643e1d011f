package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/ebbtest"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/serving"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// KubeScale measures `ebb-cluster operator` at scale on a real control plane
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) with kwok
// nodes: it creates the nodes and the ModelDeployments, scales every
// ModelDeployment 0→1 at once through spec.replicas (what `kubectl scale`
// sets), waits until the operator reports every replica ready, scales all
// back to 0 and waits until every pod is gone, and reports the times and
// the operator process's CPU and memory.
//
// Replicas run no process: kwok makes their pods Running and Ready, and
// one in-process fleet (replicaFleet) answers the pod backend's readiness
// handshake on every pod IP, as an `ebb replica` would. So "ready" means:
// pod created by the operator, scheduled on a kwok node, Ready per kwok,
// handshake answered, status written.
type KubeScale struct {
	// Cluster is the control plane, started without the fake kubelet
	// (kubetest.Options.NoFakeKubelet).
	Cluster *kubetest.Cluster
	// Nodes and Deployments default to 1000 each (100 in quick runs).
	Nodes, Deployments int
}

// Name implements harness.Scenario.
func (KubeScale) Name() string { return "kube" }

// Title implements harness.Scenario.
func (KubeScale) Title() string { return "Kubernetes operator at scale (kwok)" }

// Run implements harness.Scenario.
func (s KubeScale) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	if s.Cluster == nil {
		return res, fmt.Errorf("kube scenario needs a control plane: run it with `EBB_BENCH_KUBE=1 go test ./bench/scenarios -run TestKubeScale -timeout 20m -v`")
	}
	nodes := cmpOr(s.Nodes, harness.Pick(env, 1000, 100))
	deps := cmpOr(s.Deployments, harness.Pick(env, 1000, 100))
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	c := s.Cluster
	scheme, err := operator.NewScheme()
	if err != nil {
		return res, err
	}
	cl, err := c.NewClient(scheme)
	if err != nil {
		return res, err
	}
	if err := installCRDs(ctx, cl, filepath.Join(env.Root, "deploy", "crds")); err != nil {
		return res, err
	}
	ns := "bench-kube-" + utilrand.String(5)
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return res, err
	}
	defer func() {
		_ = cl.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}()

	fleet := newReplicaFleet(c, ns, env.Logf)
	fleetCtx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	go fleet.run(fleetCtx)

	began := time.Now()
	nodeNames, err := createKwokNodes(ctx, c, "bench-"+ns, nodes)
	defer deleteNodes(c, nodeNames)
	if err != nil {
		return res, err
	}
	if err := c.WaitNodesReady(ctx, nodeNames, 5*time.Minute); err != nil {
		return res, fmt.Errorf("kwok nodes: %w", err)
	}
	nodesReady := time.Since(began)
	env.Logf("kube: %d kwok nodes ready in %v", nodes, nodesReady.Round(time.Millisecond))

	port, err := harness.FreePort()
	if err != nil {
		return res, err
	}
	opAddr := "127.0.0.1:" + strconv.Itoa(port)
	op, err := env.Start(harness.StartOptions{Name: "ebb-operator", Dir: env.Root}, ebbtest.Cluster(env.Ebb), "operator",
		"--kubeconfig", c.Kubeconfig, "--namespace", ns, "--addr", opAddr,
		"--leader-elect=false", "--kube-api-qps", "2000", "--kube-api-burst", "4000",
		"--workers", "8", "--log-level", "warn", "--replica-image", "ebb:bench")
	if err != nil {
		return res, err
	}
	defer env.StopProc(op)
	if err := harness.WaitHTTP(ctx, op, "http://"+opAddr+"/readyz", 60*time.Second); err != nil {
		return res, err
	}
	sampler := newProcSampler(op)
	go sampler.run(ctx)

	// Create the ModelDeployments at zero and wait until the operator has
	// written the status of each.
	replicas := func(n int32) *int32 { return &n }
	began = time.Now()
	err = forEach(ctx, deps, 32, func(ctx context.Context, i int) error {
		md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("m-%04d", i), Namespace: ns}}
		md.Spec.Engine = "echo"
		md.Spec.Replicas = replicas(0)
		md.Spec.Scaling = serving.Scaling{
			MinReplicas: 0, MaxReplicas: 1, TargetConcurrency: 1,
			ScaleToZeroAfter: serving.D(time.Second), StableWindow: serving.D(6 * time.Second),
			PanicWindowPercent: 10, PanicThreshold: 200,
		}
		return cl.Create(ctx, md)
	})
	if err != nil {
		return res, fmt.Errorf("create ModelDeployments: %w", err)
	}
	created := time.Since(began)
	_, stuck, err := waitAll(ctx, cl, ns, deps, time.Minute, func(md *v1alpha1.ModelDeployment) bool {
		return md.Status.ObservedGeneration == md.Generation && md.Status.Selector != ""
	})
	if err != nil || len(stuck) > 0 {
		return res, fmt.Errorf("waiting for the operator to observe every ModelDeployment: %v %v", err, stuck)
	}
	atZero := time.Since(began)
	cpuAtZero := sampler.cpuSeconds()
	env.Logf("kube: %d ModelDeployments created in %v, all observed at zero after %v", deps, created.Round(time.Millisecond), atZero.Round(time.Millisecond))

	scale := func(n int32) error {
		patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, n))
		return forEach(ctx, deps, 32, func(ctx context.Context, i int) error {
			md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("m-%04d", i), Namespace: ns}}
			return cl.Patch(ctx, md, client.RawPatch("application/merge-patch+json", patch))
		})
	}

	// 0 → 1.
	began = time.Now()
	if err := scale(1); err != nil {
		return res, fmt.Errorf("scale to 1: %w", err)
	}
	patched := time.Since(began)
	upTimes, stuckUp, err := waitAll(ctx, cl, ns, deps, time.Minute, func(md *v1alpha1.ModelDeployment) bool {
		return md.Status.ReadyReplicas == 1 && md.Status.ObservedGeneration == md.Generation
	})
	if err != nil {
		return res, fmt.Errorf("scale 0→1: %w", err)
	}
	up := began.Add(slices.Max(append(upTimes, 0))).Sub(began)
	for _, d := range stuckUp {
		res.Notes = append(res.Notes, "not ready after the others (gave up after a minute without progress): "+d)
	}
	cpuUp := sampler.cpuSeconds() - cpuAtZero
	pods, _ := countPods(ctx, cl, ns)
	env.Logf("kube: %d of %d ready %v after the patches began (patches took %v); %d pods", len(upTimes), deps, up.Round(time.Millisecond), patched.Round(time.Millisecond), pods)

	// 1 → 0.
	began = time.Now()
	if err := scale(0); err != nil {
		return res, fmt.Errorf("scale to 0: %w", err)
	}
	downTimes, stuckDown, err := waitAll(ctx, cl, ns, deps, time.Minute, func(md *v1alpha1.ModelDeployment) bool {
		return md.Status.Replicas == 0 && md.Status.DesiredReplicas == 0 && md.Status.ObservedGeneration == md.Generation
	})
	if err != nil {
		return res, fmt.Errorf("scale 1→0: %w", err)
	}
	for _, d := range stuckDown {
		res.Notes = append(res.Notes, "not back at zero after the others: "+d)
	}
	for {
		n, err := countPods(ctx, cl, ns)
		if err != nil {
			return res, err
		}
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("scale 1→0: %d pods left: %w", n, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	down := time.Since(began)
	cpuDown := sampler.cpuSeconds() - cpuAtZero - cpuUp
	env.Logf("kube: all %d back to zero, pods gone, %v after the patches began", deps, down.Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	idle := sampler.last()
	peak := sampler.peak()

	upP := percentiles(upTimes)
	downP := percentiles(downTimes)
	res.Summary = fmt.Sprintf("A real control plane built from source (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) "+
		"with %d kwok nodes and %d ModelDeployments (engine echo) served by one `ebb-cluster operator` process "+
		"(leader election off, client QPS 2000). Every ModelDeployment is scaled 0→1 at once by patching spec.replicas "+
		"(what `kubectl scale` does), then 1→0. Replica pods run no process: kwok makes them Running and Ready and one "+
		"in-process fleet answers the pod backend's readiness handshake on every pod IP, so the times are the operator's "+
		"and the control plane's, not a model's load. Times are measured from the first patch to the status the operator "+
		"writes (readyReplicas=1; replicas=0 and every pod deleted), polled every 500ms. CPU and memory are the operator "+
		"process's, from /proc.", nodes, deps)
	res.Tables = []harness.Table{{
		Caption: "Scale test",
		Header:  []string{"step", "all done", "p50", "p90", "p99", "operator CPU"},
		Rows: [][]string{
			{fmt.Sprintf("%d kwok nodes ready", nodes), secs(nodesReady), "", "", "", ""},
			{fmt.Sprintf("create %d ModelDeployments, statuses written", deps), secs(atZero), "", "", "", fmt.Sprintf("%.1f s", cpuAtZero)},
			{"scale 0→1, all ready", secs(up), secs(upP[0]), secs(upP[1]), secs(upP[2]), fmt.Sprintf("%.1f s", cpuUp)},
			{"scale 1→0, all pods gone", secs(down), secs(downP[0]), secs(downP[1]), secs(downP[2]), fmt.Sprintf("%.1f s", cpuDown)},
		},
	}, {
		Caption: "Operator memory",
		Header:  []string{"when", "RSS"},
		Rows: [][]string{
			{"peak (sampled every second)", fmt.Sprintf("%.0f MiB", harness.MiB(peak.RSSBytes))},
			{"idle after the test", fmt.Sprintf("%.0f MiB", harness.MiB(idle.RSSBytes))},
		},
	}}
	res.Figures = map[string]float64{
		"kube.nodes":                    float64(nodes),
		"kube.deployments":              float64(deps),
		"kube.nodes_ready_seconds":      nodesReady.Seconds(),
		"kube.observed_at_zero_seconds": atZero.Seconds(),
		"kube.scale_up_seconds":         up.Seconds(),
		"kube.scale_up_ready":           float64(len(upTimes)),
		"kube.scale_up_p50_seconds":     upP[0].Seconds(),
		"kube.scale_up_p99_seconds":     upP[2].Seconds(),
		"kube.scale_down_seconds":       down.Seconds(),
		"kube.operator_cpu_seconds":     cpuAtZero + cpuUp + cpuDown,
		"kube.operator_peak_rss_mib":    harness.MiB(peak.RSSBytes),
		"kube.operator_idle_rss_mib":    harness.MiB(idle.RSSBytes),
	}
	target := harness.Pick(env, 5*time.Minute, 2*time.Minute)
	res.Goals = []harness.Goal{
		{Name: fmt.Sprintf("%d ModelDeployments 0→1, all ready", deps), Target: "≤ " + target.String(), Ebb: up.Seconds(), Unit: "s", Met: up <= target && len(stuckUp) == 0,
			Detail: fmt.Sprintf("%d of %d ready; p50 %s, p99 %s per ModelDeployment", len(upTimes), deps, secs(upP[0]), secs(upP[2]))},
		{Name: fmt.Sprintf("%d ModelDeployments 1→0, all pods gone", deps), Target: "≤ " + target.String(), Ebb: down.Seconds(), Unit: "s", Met: down <= target && len(stuckDown) == 0},
		{Name: "operator peak memory", Target: "≤ 1024 MiB RSS", Ebb: harness.MiB(peak.RSSBytes), Unit: "MiB", Met: harness.MiB(peak.RSSBytes) <= 1024,
			Detail: fmt.Sprintf("%.0f MiB idle after the run; %.1f CPU-seconds in all", harness.MiB(idle.RSSBytes), cpuAtZero+cpuUp+cpuDown)},
	}
	res.Notes = append(res.Notes, fmt.Sprintf("fleet answered %d readiness handshakes on %d pod IPs", fleet.answered(), fleet.listening()))
	return res, nil
}

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// percentiles returns p50, p90 and p99 of ds.
func percentiles(ds []time.Duration) [3]time.Duration {
	var out [3]time.Duration
	if len(ds) == 0 {
		return out
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	for i, p := range []float64{0.5, 0.9, 0.99} {
		out[i] = s[min(len(s)-1, int(p*float64(len(s))))]
	}
	return out
}

// forEach runs f for 0..n-1 on workers goroutines and returns the first
// error.
func forEach(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(ctx, i); err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			close(next)
			wg.Wait()
			return ctx.Err()
		}
	}
	close(next)
	wg.Wait()
	return first
}

// waitAll polls the ModelDeployments every 500ms until done holds for all
// n, and returns for each how long after the call it first held. When none
// gets done for stall, it gives up on the rest and returns them as stuck,
// each with what its status says.
func waitAll(ctx context.Context, cl client.Client, ns string, n int, stall time.Duration, done func(*v1alpha1.ModelDeployment) bool) ([]time.Duration, []string, error) {
	began := time.Now()
	progress := began
	at := map[string]time.Duration{}
	for {
		var list v1alpha1.ModelDeploymentList
		if err := cl.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, nil, err
		}
		for i := range list.Items {
			md := &list.Items[i]
			if _, ok := at[md.Name]; !ok && done(md) {
				at[md.Name] = time.Since(began)
				progress = time.Now()
			}
		}
		out := make([]time.Duration, 0, len(at))
		for _, d := range at {
			out = append(out, d)
		}
		if len(at) >= n {
			return out, nil, nil
		}
		if time.Since(progress) > stall {
			var stuck []string
			for i := range list.Items {
				md := &list.Items[i]
				if _, ok := at[md.Name]; !ok {
					stuck = append(stuck, describeMD(ctx, cl, md))
				}
			}
			return out, stuck, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("%d of %d done: %w", len(at), n, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// describeMD says where a ModelDeployment stands: its status and its pods.
func describeMD(ctx context.Context, cl client.Client, md *v1alpha1.ModelDeployment) string {
	st := md.Status
	d := fmt.Sprintf("%s: replicas=%d ready=%d desired=%d reason=%q", md.Name, st.Replicas, st.ReadyReplicas, st.DesiredReplicas, st.Reason)
	for _, r := range st.ReplicaStatuses {
		d += fmt.Sprintf("; replica %s %s at %s", r.ID, r.State, r.Endpoint)
	}
	var pods corev1.PodList
	if err := cl.List(ctx, &pods, client.InNamespace(md.Namespace), client.MatchingLabels{operator.LabelDeployment: md.Name}); err == nil {
		for _, p := range pods.Items {
			d += fmt.Sprintf("; pod %s phase %s IP %s", p.Name, p.Status.Phase, p.Status.PodIP)
		}
	}
	return d
}

func countPods(ctx context.Context, cl client.Client, ns string) (int, error) {
	var pods corev1.PodList
	if err := cl.List(ctx, &pods, client.InNamespace(ns), client.HasLabels{operator.LabelDeployment}); err != nil {
		return 0, err
	}
	return len(pods.Items), nil
}

// installCRDs creates the CRDs in dir (ignoring existing ones) and waits
// until they are established.
func installCRDs(ctx context.Context, cl client.Client, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no CRDs in %s: %v", dir, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{}
		if err := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096).Decode(&u.Object); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if err := cl.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s: %w", f, err)
		}
		for established := false; !established; {
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(u.GroupVersionKind())
			if err := cl.Get(ctx, client.ObjectKey{Name: u.GetName()}, got); err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				established = established || (m["type"] == "Established" && m["status"] == "True")
			}
			if !established {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	}
	return nil
}

// createKwokNodes creates n nodes that kwok manages (as
// kubetest.CreateNodes does), 16 at a time.
func createKwokNodes(ctx context.Context, c *kubetest.Cluster, prefix string, n int) ([]string, error) {
	alloc := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	err := forEach(ctx, n, 16, func(ctx context.Context, i int) error {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name: names[i],
				Labels: map[string]string{
					kubetest.NodeLabel:   kubetest.NodeLabelValue,
					corev1.LabelHostname: names[i],
					corev1.LabelOSStable: "linux",
				},
				Annotations: map[string]string{kubetest.NodeAnnotation: kubetest.NodeAnnotationValue},
			},
			Status: corev1.NodeStatus{Allocatable: alloc.DeepCopy(), Capacity: alloc.DeepCopy()},
		}
		_, err := c.Clientset().CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		return err
	})
	return names, err
}

func deleteNodes(c *kubetest.Cluster, names []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_ = forEach(ctx, len(names), 16, func(ctx context.Context, i int) error {
		return c.Clientset().CoreV1().Nodes().Delete(ctx, names[i], metav1.DeleteOptions{})
	})
}
