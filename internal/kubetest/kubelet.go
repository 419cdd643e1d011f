package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// ContainerName is the container the fake kubelet runs, unless the pod's
// ContainerAnnotation names another.
const ContainerName = "ebb"

// ContainerAnnotation on a pod names the container the fake kubelet runs,
// for pods whose container is not named "ebb" (the Helm chart's "operator"
// and "gateway"; InstallChart sets it through the chart's podAnnotations).
const ContainerAnnotation = "kubetest.ebb.dev/container"

// PullDurationAnnotation on a pod makes the fake kubelet wait that long
// (a Go duration, e.g. "1.5s") before starting the container, and report it
// as the image pull time in the Pulled event.
const PullDurationAnnotation = "kubetest.ebb.dev/pull-duration"

// Restart back-off of containers whose restart policy restarts them: a
// real kubelet's starts at 10s and caps at 5m; tests cannot wait that long.
const (
	restartBackoff    = time.Second
	restartBackoffMax = 30 * time.Second
	// A run longer than this resets the back-off.
	restartBackoffReset = time.Minute
	// configRetry is how often a container whose configuration cannot be
	// built yet (a missing Secret) is retried.
	configRetry = 100 * time.Millisecond
)

// kubelet runs one container of the pods on kwok nodes as local processes
// of the ebb binary: the one named "ebb", or the one ContainerAnnotation
// names.
type kubelet struct {
	cs       kubernetes.Interface
	bin      string
	dir      string // the cluster's Dir
	host     string // the apiserver URL, for pods' kubeconfigs
	caPEM    []byte
	podLog   func(ns, name string) string
	logf     func(string, ...any)
	services *serviceProxy

	// mu guards pods, the mutable fields of each podProc, and locals.
	mu   sync.Mutex
	pods map[types.UID]*podProc
	// locals maps the local directory of each mount the kubelet made to
	// the container path it stands for (see hostPathKey).
	locals map[string]string
}

// podProc is one pod's container, over all its runs.
type podProc struct {
	ns, name, node string
	uid            types.UID
	container      string
	// stop is closed when the pod is being deleted or the kubelet stops:
	// no process starts after it.
	stop chan struct{}
	// done is closed once no process runs or will run and the final
	// status is written; nil when the kubelet never started the pod.
	done chan struct{}

	// Guarded by kubelet.mu.
	cmd         *exec.Cmd // the running process; nil between runs
	terminating bool
	last        *Process
}

// Process is what the fake kubelet ran for a pod's container: the command
// line and environment after every rewrite, and its working directory.
type Process struct {
	Argv []string
	Env  []string
	Dir  string
	PID  int
}

func newKubelet(c *Cluster, logf func(string, ...any)) *kubelet {
	k := &kubelet{
		cs: c.clientset, bin: c.ebbBin, dir: c.Dir, host: c.Host, caPEM: c.config.TLSClientConfig.CAData,
		podLog: c.PodLog, logf: logf, pods: map[types.UID]*podProc{}, locals: map[string]string{},
	}
	k.services = newServiceProxy(c.clientset, serviceCIDR4(c.PodCIDR), logf)
	return k
}

// run watches pods (and, for the service proxy, Services) until ctx ends;
// it returns once the service proxy has stopped.
func (k *kubelet) run(ctx context.Context) {
	f := informers.NewSharedInformerFactory(k.cs, 0)
	inf := f.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.sync(ctx, obj) },
		UpdateFunc: func(_, obj any) { k.sync(ctx, obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				k.deleted(pod)
			}
		},
	})
	k.services.register(f)
	f.Start(ctx.Done())
	<-ctx.Done()
	f.Shutdown()
	k.services.shutdown()
}

// ours reports whether the fake kubelet runs pod: it has a container named
// "ebb" or a ContainerAnnotation. kwok's stages (kwok.go) make the same
// choice.
func ours(pod *corev1.Pod) bool {
	return pod.Annotations[ContainerAnnotation] != "" ||
		slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == ContainerName })
}

// podContainer returns the container the fake kubelet runs, or nil.
func podContainer(pod *corev1.Pod) *corev1.Container {
	name := ContainerName
	if n := pod.Annotations[ContainerAnnotation]; n != "" {
		name = n
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

func containerName(pod *corev1.Pod) string {
	if n := pod.Annotations[ContainerAnnotation]; n != "" {
		return n
	}
	return ContainerName
}

func (k *kubelet) sync(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" || !ours(pod) {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	pp := k.pods[pod.UID]
	if pod.DeletionTimestamp != nil {
		if pp == nil {
			pp = &podProc{ns: pod.Namespace, name: pod.Name, uid: pod.UID, stop: make(chan struct{})}
			k.pods[pod.UID] = pp
		}
		if !pp.terminating {
			pp.stopLocked()
			grace := time.Duration(0)
			if g := pod.DeletionGracePeriodSeconds; g != nil {
				grace = time.Duration(*g) * time.Second
			}
			go k.terminate(ctx, pp, grace)
		}
		return
	}
	if pp != nil || pod.Status.PodIP == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return
	}
	name := containerName(pod)
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == name && cs.State.Terminated != nil && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			return // ran and ended before this kubelet saw it
		}
	}
	pp = &podProc{ns: pod.Namespace, name: pod.Name, node: pod.Spec.NodeName, uid: pod.UID, container: name,
		stop: make(chan struct{}), done: make(chan struct{})}
	k.pods[pod.UID] = pp
	go k.start(ctx, pp, pod.DeepCopy())
}

// stopLocked marks the pod terminating: no process starts after it.
func (pp *podProc) stopLocked() {
	if !pp.terminating {
		pp.terminating = true
		close(pp.stop)
	}
}

// killLocked kills the running process, if any, and its children.
func (pp *podProc) killLocked() {
	if pp.cmd != nil && pp.cmd.Process != nil {
		_ = syscall.Kill(-pp.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// deleted handles a pod gone from the API (forced deletion, or the end of a
// graceful one): its process is killed at once.
func (k *kubelet) deleted(pod *corev1.Pod) {
	k.mu.Lock()
	pp := k.pods[pod.UID]
	delete(k.pods, pod.UID)
	if pp != nil {
		pp.stopLocked()
		pp.killLocked()
	}
	k.mu.Unlock()
	if pp != nil && pp.done != nil {
		go func() {
			<-pp.done
			k.removePodDir(pp.uid)
		}()
	}
}

// killAll kills every process and waits for them.
func (k *kubelet) killAll() {
	k.mu.Lock()
	pods := k.pods
	k.pods = map[types.UID]*podProc{}
	for _, pp := range pods {
		pp.stopLocked()
		pp.killLocked()
	}
	k.mu.Unlock()
	for _, pp := range pods {
		if pp.done != nil {
			<-pp.done
		}
	}
}

// PodProcess returns what the fake kubelet last ran for the named pod's
// container (argv and environment after every rewrite), while the pod
// exists; false when it has run nothing for it.
func (c *Cluster) PodProcess(namespace, name string) (Process, bool) {
	if c.kubelet == nil {
		return Process{}, false
	}
	return c.kubelet.process(namespace, name)
}

// process returns what the kubelet last ran for the named pod.
func (k *kubelet) process(ns, name string) (Process, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, pp := range k.pods {
		if pp.ns == ns && pp.name == name && pp.last != nil {
			p := *pp.last
			p.Argv, p.Env = slices.Clone(p.Argv), slices.Clone(p.Env)
			return p, true
		}
	}
	return Process{}, false
}

// terminate does what a kubelet does for a pod being deleted: SIGTERM,
// SIGKILL after the grace period, then the final deletion.
func (k *kubelet) terminate(ctx context.Context, pp *podProc, grace time.Duration) {
	if pp.done != nil {
		k.mu.Lock()
		cmd := pp.cmd
		if cmd != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		}
		k.mu.Unlock()
		if cmd != nil {
			k.event(ctx, pp, corev1.EventTypeNormal, "Killing", "Stopping container "+pp.container)
		}
		t := time.NewTimer(grace)
		select {
		case <-pp.done:
		case <-t.C:
			k.mu.Lock()
			pp.killLocked()
			k.mu.Unlock()
			select {
			case <-pp.done:
			case <-ctx.Done():
			}
		case <-ctx.Done():
		}
		t.Stop()
	}
	zero := int64(0)
	err := k.cs.CoreV1().Pods(pp.ns).Delete(ctx, pp.name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &pp.uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && ctx.Err() == nil {
		k.logf("fake kubelet: delete pod %s/%s: %v", pp.ns, pp.name, err)
	}
}

// wait waits d, or until the pod stops or ctx ends; it reports whether
// the full time passed.
func (pp *podProc) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-pp.stop:
	case <-ctx.Done():
	}
	return false
}

// start pulls (waits PullDurationAnnotation), runs the container, reports
// its status, and restarts it as its pod's restart policy says, until the
// pod stops or the container ends for good.
func (k *kubelet) start(ctx context.Context, pp *podProc, pod *corev1.Pod) {
	defer close(pp.done)
	ctr := podContainer(pod)
	if ctr == nil {
		msg := fmt.Sprintf("pod has no container %q (annotation %s)", pp.container, ContainerAnnotation)
		k.event(ctx, pp, corev1.EventTypeWarning, "Failed", "Error: "+msg)
		k.setTerminated(ctx, pp, runState{}, &corev1.ContainerStateTerminated{
			ExitCode: 128, Reason: "StartError", Message: msg, StartedAt: metav1.Now(), FinishedAt: metav1.Now(),
		})
		return
	}
	pull, _ := time.ParseDuration(pod.Annotations[PullDurationAnnotation])
	if pull > 0 {
		k.event(ctx, pp, corev1.EventTypeNormal, "Pulling", fmt.Sprintf("Pulling image %q", ctr.Image))
		pp.wait(ctx, pull)
	}
	k.event(ctx, pp, corev1.EventTypeNormal, "Pulled",
		fmt.Sprintf("Successfully pulled image %q in %v (%v including waiting). Image size: 0 bytes.", ctr.Image, pull, pull))

	var rs runState
	backoff := restartBackoff
	lastConfigErr := ""
	for {
		l, err := k.prepare(ctx, pod, ctr)
		var cerr *configError
		if errors.As(err, &cerr) {
			// A real kubelet keeps the container waiting and retries.
			if msg := cerr.Error(); msg != lastConfigErr {
				lastConfigErr = msg
				k.event(ctx, pp, corev1.EventTypeWarning, cerr.event, "Error: "+msg)
				k.setWaiting(ctx, pp, rs, cerr.reason, msg)
			}
			if pp.wait(ctx, configRetry) {
				// Start from the pod as it is now: kwok may have changed
				// its status (its IP among it) while it waited.
				if fresh, err := k.cs.CoreV1().Pods(pp.ns).Get(ctx, pp.name, metav1.GetOptions{}); err == nil && fresh.UID == pp.uid && fresh.Status.PodIP != "" {
					pod = fresh
					ctr = podContainer(pod)
				}
				continue
			}
			err = errors.New("pod deleted before its container started")
		}
		lastConfigErr = ""
		var term *corev1.ContainerStateTerminated
		if err == nil {
			term, err = k.runOnce(ctx, pp, pod, ctr, l, &rs)
		}
		if err != nil {
			k.event(ctx, pp, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
			k.setTerminated(ctx, pp, rs, &corev1.ContainerStateTerminated{
				ExitCode: 128, Reason: "StartError", Message: err.Error(),
				StartedAt: metav1.Now(), FinishedAt: metav1.Now(),
			})
			return
		}
		if !restarts(pod.Spec.RestartPolicy, term.ExitCode) || pp.stopped(ctx) {
			k.setTerminated(ctx, pp, rs, term)
			return
		}
		if time.Since(term.StartedAt.Time) > restartBackoffReset {
			backoff = restartBackoff
		}
		rs.lastTerm = term
		rs.restarts++
		k.event(ctx, pp, corev1.EventTypeWarning, "BackOff", fmt.Sprintf("Back-off restarting failed container %s in pod %s_%s(%s)", pp.container, pp.name, pp.ns, pp.uid))
		k.setWaiting(ctx, pp, rs, "CrashLoopBackOff",
			fmt.Sprintf("back-off %v restarting failed container=%s pod=%s_%s(%s)", backoff, pp.container, pp.name, pp.ns, pp.uid))
		if !pp.wait(ctx, backoff) {
			k.setTerminated(ctx, pp, rs, term)
			return
		}
		backoff = min(2*backoff, restartBackoffMax)
	}
}

// restarts says whether a container that exited with code restarts.
func restarts(policy corev1.RestartPolicy, code int32) bool {
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return code != 0
	}
	return true // Always, the default
}

// runState is what the container's status carries from run to run.
type runState struct {
	restarts int32
	lastTerm *corev1.ContainerStateTerminated
}

// stopped reports whether the pod is stopping or the kubelet is.
func (pp *podProc) stopped(ctx context.Context) bool {
	select {
	case <-pp.stop:
		return true
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

// runOnce starts the prepared process, reports it running (and ready once
// its probe passes), and waits for it to exit; it returns how it ended, or
// an error when it could not start.
func (k *kubelet) runOnce(ctx context.Context, pp *podProc, pod *corev1.Pod, ctr *corev1.Container, l *launch, rs *runState) (*corev1.ContainerStateTerminated, error) {
	logFile, err := os.OpenFile(k.podLog(pp.ns, pp.name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(l.argv[0], l.argv[1:]...)
	cmd.Dir = l.dir
	cmd.Env = l.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	k.mu.Lock()
	if pp.terminating {
		err = errors.New("pod deleted before its container started")
	} else if err = cmd.Start(); err == nil {
		pp.cmd = cmd
		pp.last = &Process{Argv: l.argv, Env: l.env, Dir: l.dir, PID: cmd.Process.Pid}
	}
	k.mu.Unlock()
	logFile.Close()
	if err != nil {
		return nil, err
	}
	startedAt := metav1.Now()
	id := fmt.Sprintf("kubetest://%d", cmd.Process.Pid)
	k.logf("fake kubelet: pod %s/%s runs pid %d: %s", pp.ns, pp.name, cmd.Process.Pid, strings.Join(l.argv, " "))
	k.event(ctx, pp, corev1.EventTypeNormal, "Created", "Created container: "+pp.container)
	k.event(ctx, pp, corev1.EventTypeNormal, "Started", "Started container "+pp.container)
	k.setRunning(ctx, pp, ctr, *rs, startedAt, id)
	probeCtx, stopProbe := context.WithCancel(ctx)
	probeDone := make(chan struct{})
	go func() { defer close(probeDone); k.probe(probeCtx, pp, ctr, pod.Status.PodIP, id) }()
	refreshDone := make(chan struct{})
	go func() { defer close(refreshDone); k.refreshVolumes(probeCtx, pod, ctr) }()

	waitErr := cmd.Wait()
	stopProbe()
	<-probeDone
	<-refreshDone
	k.mu.Lock()
	pp.cmd = nil
	k.mu.Unlock()
	code, reason, signal := 0, "Completed", ""
	if ps := cmd.ProcessState; ps != nil && !ps.Success() {
		code, reason = ps.ExitCode(), "Error"
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code, signal = 128+int(ws.Signal()), ws.Signal().String()
		}
	} else if waitErr != nil && cmd.ProcessState == nil {
		code, reason = 128, "Error"
	}
	msg := ""
	if code != 0 && ctr.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
		msg = logTail(k.podLog(pp.ns, pp.name), 80, 4096)
	}
	k.logf("fake kubelet: pod %s/%s pid %d exited %d %s", pp.ns, pp.name, cmd.Process.Pid, code, signal)
	return &corev1.ContainerStateTerminated{
		ExitCode: int32(code), Reason: reason, Message: msg,
		StartedAt: startedAt, FinishedAt: metav1.Now(), ContainerID: id,
	}, nil
}

// removePodDir removes the pod's directory (its emptyDirs and projected
// files) once the pod is gone, unless EBB_KUBETEST_KEEP is set.
func (k *kubelet) removePodDir(uid types.UID) {
	if os.Getenv("EBB_KUBETEST_KEEP") != "" {
		return
	}
	_ = os.RemoveAll(k.podDir(uid))
}

// podDir is the pod's own directory: its working directory, kubeconfig,
// emptyDir and projected volumes.
func (k *kubelet) podDir(uid types.UID) string {
	return filepath.Join(k.dir, "kubelet", "pods", string(uid))
}
