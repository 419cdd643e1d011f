package kubetest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// ContainerName is the container the fake kubelet runs.
const ContainerName = "ebb"

// PullDurationAnnotation on a pod makes the fake kubelet wait that long
// (a Go duration, e.g. "1.5s") before starting the container, and report it
// as the image pull time in the Pulled event.
const PullDurationAnnotation = "kubetest.ebb.dev/pull-duration"

// kubelet runs the ebb container of pods on kwok nodes as local processes.
type kubelet struct {
	cs     kubernetes.Interface
	bin    string
	podLog func(ns, name string) string
	logf   func(string, ...any)

	// mu guards pods.
	mu   sync.Mutex
	pods map[types.UID]*podProc
}

// podProc is one pod's container process.
type podProc struct {
	ns, name, node string
	uid            types.UID
	cmd            *exec.Cmd // nil until started, or if it never started
	exited         chan struct{}
	statusDone     chan struct{} // closed once the terminated status is written
	terminating    bool
}

func newKubelet(c *Cluster, logf func(string, ...any)) *kubelet {
	return &kubelet{cs: c.clientset, bin: c.ebbBin, podLog: c.PodLog, logf: logf, pods: map[types.UID]*podProc{}}
}

// run watches pods until ctx ends.
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
	f.Start(ctx.Done())
	<-ctx.Done()
	f.Shutdown()
}

func ebbContainer(pod *corev1.Pod) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == ContainerName {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

func (k *kubelet) sync(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" || ebbContainer(pod) == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	pp := k.pods[pod.UID]
	if pod.DeletionTimestamp != nil {
		if pp == nil {
			pp = &podProc{ns: pod.Namespace, name: pod.Name, uid: pod.UID}
			k.pods[pod.UID] = pp
		}
		if !pp.terminating {
			pp.terminating = true
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
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == ContainerName && cs.State.Terminated != nil {
			return // ran and ended before this kubelet saw it
		}
	}
	pp = &podProc{ns: pod.Namespace, name: pod.Name, node: pod.Spec.NodeName, uid: pod.UID,
		exited: make(chan struct{}), statusDone: make(chan struct{})}
	k.pods[pod.UID] = pp
	go k.start(ctx, pp, pod.DeepCopy())
}

// deleted handles a pod gone from the API (forced deletion, or the end of a
// graceful one): its process is killed at once.
func (k *kubelet) deleted(pod *corev1.Pod) {
	k.mu.Lock()
	pp := k.pods[pod.UID]
	delete(k.pods, pod.UID)
	if pp != nil {
		pp.terminating = true // a start in progress gives up
	}
	k.mu.Unlock()
	if pp != nil {
		pp.kill()
	}
}

func (pp *podProc) kill() {
	if pp.cmd != nil && pp.cmd.Process != nil {
		_ = syscall.Kill(-pp.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// killAll kills every process and waits for them.
func (k *kubelet) killAll() {
	k.mu.Lock()
	pods := k.pods
	k.pods = map[types.UID]*podProc{}
	k.mu.Unlock()
	for _, pp := range pods {
		pp.kill()
	}
	for _, pp := range pods {
		if pp.cmd != nil && pp.exited != nil {
			<-pp.exited
		}
	}
}

// terminate does what a kubelet does for a pod being deleted: SIGTERM,
// SIGKILL after the grace period, then the final deletion.
func (k *kubelet) terminate(ctx context.Context, pp *podProc, grace time.Duration) {
	k.mu.Lock()
	cmd := pp.cmd
	k.mu.Unlock()
	if cmd != nil {
		k.event(ctx, pp, corev1.EventTypeNormal, "Killing", "Stopping container "+ContainerName)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		select {
		case <-pp.exited:
		case <-t.C:
			pp.kill()
			<-pp.exited
		case <-ctx.Done():
		}
		t.Stop()
		select {
		case <-pp.statusDone:
		case <-ctx.Done():
		}
	} else if pp.exited != nil {
		// Starting (pulling): wait for start to see terminating and give up.
		select {
		case <-pp.exited:
		case <-ctx.Done():
		}
	}
	zero := int64(0)
	err := k.cs.CoreV1().Pods(pp.ns).Delete(ctx, pp.name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &pp.uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		k.logf("fake kubelet: delete pod %s/%s: %v", pp.ns, pp.name, err)
	}
}

// start pulls (waits PullDurationAnnotation), runs the container, and
// reports its status until it exits.
func (k *kubelet) start(ctx context.Context, pp *podProc, pod *corev1.Pod) {
	ctr := ebbContainer(pod)
	pull, _ := time.ParseDuration(pod.Annotations[PullDurationAnnotation])
	if pull > 0 {
		k.event(ctx, pp, corev1.EventTypeNormal, "Pulling", fmt.Sprintf("Pulling image %q", ctr.Image))
		t := time.NewTimer(pull)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	k.event(ctx, pp, corev1.EventTypeNormal, "Pulled",
		fmt.Sprintf("Successfully pulled image %q in %v (%v including waiting). Image size: 0 bytes.", ctr.Image, pull, pull))

	k.mu.Lock()
	terminating := pp.terminating
	k.mu.Unlock()
	argv, err := k.argv(ctr, pod.Status.PodIP)
	if terminating {
		err = fmt.Errorf("pod deleted before its container started")
	}
	var logFile *os.File
	if err == nil {
		logFile, err = os.OpenFile(k.podLog(pp.ns, pp.name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	}
	var cmd *exec.Cmd
	if err == nil {
		cmd = exec.Command(argv[0], argv[1:]...)
		cmd.Dir = filepath.Dir(logFile.Name())
		cmd.Env = os.Environ()
		for _, e := range ctr.Env {
			if e.ValueFrom == nil {
				cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
			}
		}
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		k.mu.Lock()
		if pp.terminating {
			err = fmt.Errorf("pod deleted before its container started")
		} else if err = cmd.Start(); err == nil {
			pp.cmd = cmd
		}
		k.mu.Unlock()
		logFile.Close()
	}
	startedAt := metav1.Now()
	if err != nil {
		k.event(ctx, pp, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		k.setTerminated(ctx, pp, startedAt, 128, "StartError", err.Error(), "")
		close(pp.exited)
		close(pp.statusDone)
		return
	}
	k.logf("fake kubelet: pod %s/%s runs pid %d: %s", pp.ns, pp.name, cmd.Process.Pid, strings.Join(argv, " "))
	k.event(ctx, pp, corev1.EventTypeNormal, "Created", "Created container: "+ContainerName)
	k.event(ctx, pp, corev1.EventTypeNormal, "Started", "Started container "+ContainerName)
	k.updateStatus(ctx, pp, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		setContainerStatus(p, corev1.ContainerStatus{
			Name: ContainerName, Image: ctr.Image, ImageID: ctr.Image,
			ContainerID: fmt.Sprintf("kubetest://%d", cmd.Process.Pid),
			Started:     ptr(true),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}},
		})
	})
	probeCtx, stopProbe := context.WithCancel(ctx)
	go k.probe(probeCtx, pp, ctr, pod.Status.PodIP)

	waitErr := cmd.Wait()
	stopProbe()
	close(pp.exited)
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
	k.setTerminated(ctx, pp, startedAt, code, reason, msg, fmt.Sprintf("kubetest://%d", cmd.Process.Pid))
	close(pp.statusDone)
}

// argv builds the container's command line, with the ebb binary for "ebb"
// and the pod IP for --addr 0.0.0.0.
func (k *kubelet) argv(ctr *corev1.Container, podIP string) ([]string, error) {
	argv := append(append([]string{}, ctr.Command...), ctr.Args...)
	if len(ctr.Command) == 0 {
		argv = append([]string{"ebb"}, ctr.Args...)
	}
	if filepath.Base(argv[0]) != "ebb" {
		return nil, fmt.Errorf("the fake kubelet runs only the ebb binary; container %q runs %q", ctr.Name, argv[0])
	}
	argv[0] = k.bin
	for i, a := range argv {
		switch {
		case strings.HasPrefix(a, "--addr=0.0.0.0:"):
			argv[i] = "--addr=" + net.JoinHostPort(podIP, strings.TrimPrefix(a, "--addr=0.0.0.0:"))
		case a == "--addr" && i+1 < len(argv) && strings.HasPrefix(argv[i+1], "0.0.0.0:"):
			argv[i+1] = net.JoinHostPort(podIP, strings.TrimPrefix(argv[i+1], "0.0.0.0:"))
		}
	}
	return argv, nil
}

// probe polls the container's HTTP readiness probe every 100ms until it
// answers 2xx, then marks the pod Ready. Without an httpGet probe the pod
// is Ready at once.
func (k *kubelet) probe(ctx context.Context, pp *podProc, ctr *corev1.Container, podIP string) {
	if p := ctr.ReadinessProbe; p != nil && p.HTTPGet != nil {
		url := probeURL(ctr, p.HTTPGet, podIP)
		client := &http.Client{Timeout: time.Second}
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode >= 200 && resp.StatusCode < 400 {
					break
				}
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}
	k.updateStatus(ctx, pp, func(p *corev1.Pod) {
		now := metav1.Now()
		setCondition(p, corev1.PodReady, corev1.ConditionTrue, "", now)
		setCondition(p, corev1.ContainersReady, corev1.ConditionTrue, "", now)
		for i := range p.Status.ContainerStatuses {
			if p.Status.ContainerStatuses[i].Name == ContainerName && p.Status.ContainerStatuses[i].State.Running != nil {
				p.Status.ContainerStatuses[i].Ready = true
			}
		}
	})
}

func probeURL(ctr *corev1.Container, g *corev1.HTTPGetAction, podIP string) string {
	port := g.Port.IntValue()
	if g.Port.Type == intstr.String {
		for _, p := range ctr.Ports {
			if p.Name == g.Port.StrVal {
				port = int(p.ContainerPort)
			}
		}
	}
	host := podIP
	if g.Host != "" {
		host = g.Host
	}
	scheme := "http"
	if g.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + g.Path
}

func (k *kubelet) setTerminated(ctx context.Context, pp *podProc, startedAt metav1.Time, code int, reason, msg, id string) {
	k.updateStatus(ctx, pp, func(p *corev1.Pod) {
		now := metav1.Now()
		var image string
		if c := ebbContainer(p); c != nil {
			image = c.Image
		}
		setContainerStatus(p, corev1.ContainerStatus{
			Name: ContainerName, Image: image, ImageID: image, ContainerID: id, Started: ptr(false),
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: int32(code), Reason: reason, Message: msg,
				StartedAt: startedAt, FinishedAt: now, ContainerID: id,
			}},
		})
		setCondition(p, corev1.PodReady, corev1.ConditionFalse, "PodCompleted", now)
		setCondition(p, corev1.ContainersReady, corev1.ConditionFalse, "PodCompleted", now)
		p.Status.Phase = corev1.PodFailed
		if code == 0 {
			p.Status.Phase = corev1.PodSucceeded
		}
	})
}

// updateStatus applies mutate to the pod's current status, retrying on
// conflicts; a pod that is gone or replaced is left alone.
func (k *kubelet) updateStatus(ctx context.Context, pp *podProc, mutate func(*corev1.Pod)) {
	pods := k.cs.CoreV1().Pods(pp.ns)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := pods.Get(ctx, pp.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.UID != pp.uid {
			return nil
		}
		mutate(p)
		_, err = pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		k.logf("fake kubelet: update status of pod %s/%s: %v", pp.ns, pp.name, err)
	}
}

// event posts an event about the pod's container, as a kubelet does.
func (k *kubelet) event(ctx context.Context, pp *podProc, typ, reason, msg string) {
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x", pp.name, time.Now().UnixNano()),
			Namespace: pp.ns,
		},
		InvolvedObject: corev1.ObjectReference{
			Kind: "Pod", APIVersion: "v1", Namespace: pp.ns, Name: pp.name, UID: pp.uid,
			FieldPath: "spec.containers{" + ContainerName + "}",
		},
		Reason: reason, Message: msg, Type: typ,
		Source:         corev1.EventSource{Component: "kubelet", Host: pp.node},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "kubelet", ReportingInstance: pp.node,
	}
	if _, err := k.cs.CoreV1().Events(pp.ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil && ctx.Err() == nil {
		k.logf("fake kubelet: event %s for pod %s/%s: %v", reason, pp.ns, pp.name, err)
	}
}

func setContainerStatus(p *corev1.Pod, cs corev1.ContainerStatus) {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == cs.Name {
			cs.RestartCount = p.Status.ContainerStatuses[i].RestartCount
			p.Status.ContainerStatuses[i] = cs
			return
		}
	}
	p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, cs)
}

func setCondition(p *corev1.Pod, typ corev1.PodConditionType, status corev1.ConditionStatus, reason string, now metav1.Time) {
	for i := range p.Status.Conditions {
		c := &p.Status.Conditions[i]
		if c.Type == typ {
			if c.Status != status {
				c.LastTransitionTime = now
			}
			c.Status, c.Reason = status, reason
			return
		}
	}
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: typ, Status: status, Reason: reason, LastTransitionTime: now})
}

// logTail returns the last lines of a file, at most maxBytes.
func logTail(path string, lines, maxBytes int) string {
	b, _ := os.ReadFile(path)
	b = bytes.TrimRight(b, "\n")
	if n := bytes.Count(b, []byte("\n")); n >= lines {
		for range n - lines + 1 {
			b = b[bytes.IndexByte(b, '\n')+1:]
		}
	}
	if len(b) > maxBytes {
		b = b[len(b)-maxBytes:]
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }
