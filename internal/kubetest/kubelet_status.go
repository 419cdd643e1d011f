package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
)

// probe polls the container's HTTP readiness probe every 100ms until it
// answers 2xx or 3xx, then marks the pod Ready (if the container id still
// runs). Without an httpGet probe the pod is Ready at once. An HTTPS probe
// skips certificate verification, as a kubelet's does.
func (k *kubelet) probe(ctx context.Context, pp *podProc, ctr *corev1.Container, podIP, id string) {
	if p := ctr.ReadinessProbe; p != nil && p.HTTPGet != nil {
		url := probeURL(ctr, p.HTTPGet, podIP)
		// An https probe does not verify the certificate, as a kubelet's.
		client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // as a kubelet probes
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
		i := containerStatusIndex(p, pp.container)
		if i < 0 || p.Status.ContainerStatuses[i].ContainerID != id || p.Status.ContainerStatuses[i].State.Running == nil {
			return // this run ended meanwhile
		}
		p.Status.ContainerStatuses[i].Ready = true
		now := metav1.Now()
		setCondition(p, corev1.PodReady, corev1.ConditionTrue, "", now)
		setCondition(p, corev1.ContainersReady, corev1.ConditionTrue, "", now)
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

// containerStatus is the status of the container the kubelet runs, with
// what carries over between runs.
func (pp *podProc) containerStatus(p *corev1.Pod, rs runState, state corev1.ContainerState, id string) corev1.ContainerStatus {
	var image string
	for _, c := range p.Spec.Containers {
		if c.Name == pp.container {
			image = c.Image
		}
	}
	cs := corev1.ContainerStatus{
		Name: pp.container, Image: image, ImageID: image, ContainerID: id,
		RestartCount: rs.restarts, Started: ptr(state.Running != nil), State: state,
	}
	if rs.lastTerm != nil {
		cs.LastTerminationState = corev1.ContainerState{Terminated: rs.lastTerm.DeepCopy()}
	}
	return cs
}

// setRunning reports a run started: phase Running, not ready yet.
func (k *kubelet) setRunning(ctx context.Context, pp *podProc, ctr *corev1.Container, rs runState, startedAt metav1.Time, id string) {
	k.updateStatus(ctx, pp, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		setContainerStatus(p, pp.containerStatus(p, rs,
			corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}, id))
		now := metav1.Now()
		setCondition(p, corev1.PodReady, corev1.ConditionFalse, "ContainersNotReady", now)
		setCondition(p, corev1.ContainersReady, corev1.ConditionFalse, "ContainersNotReady", now)
	})
}

// setWaiting reports the container waiting (a configuration error, or
// the back-off before a restart).
func (k *kubelet) setWaiting(ctx context.Context, pp *podProc, rs runState, reason, msg string) {
	k.updateStatus(ctx, pp, func(p *corev1.Pod) {
		setContainerStatus(p, pp.containerStatus(p, rs,
			corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}, ""))
		now := metav1.Now()
		setCondition(p, corev1.PodReady, corev1.ConditionFalse, "ContainersNotReady", now)
		setCondition(p, corev1.ContainersReady, corev1.ConditionFalse, "ContainersNotReady", now)
		if rs.lastTerm != nil {
			p.Status.Phase = corev1.PodRunning // restarting, as a kubelet reports it
		}
	})
}

// setTerminated reports the container's final end: phase Succeeded or
// Failed.
func (k *kubelet) setTerminated(ctx context.Context, pp *podProc, rs runState, term *corev1.ContainerStateTerminated) {
	k.updateStatus(ctx, pp, func(p *corev1.Pod) {
		setContainerStatus(p, pp.containerStatus(p, rs, corev1.ContainerState{Terminated: term.DeepCopy()}, term.ContainerID))
		now := metav1.Now()
		setCondition(p, corev1.PodReady, corev1.ConditionFalse, "PodCompleted", now)
		setCondition(p, corev1.ContainersReady, corev1.ConditionFalse, "PodCompleted", now)
		p.Status.Phase = corev1.PodFailed
		if term.ExitCode == 0 {
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
	container := pp.container
	if container == "" {
		container = ContainerName
	}
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x", pp.name, time.Now().UnixNano()),
			Namespace: pp.ns,
		},
		InvolvedObject: corev1.ObjectReference{
			Kind: "Pod", APIVersion: "v1", Namespace: pp.ns, Name: pp.name, UID: pp.uid,
			FieldPath: "spec.containers{" + container + "}",
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

func containerStatusIndex(p *corev1.Pod, name string) int {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == name {
			return i
		}
	}
	return -1
}

func setContainerStatus(p *corev1.Pod, cs corev1.ContainerStatus) {
	if i := containerStatusIndex(p, cs.Name); i >= 0 {
		p.Status.ContainerStatuses[i] = cs
		return
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
