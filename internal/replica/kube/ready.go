package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// Cold-start phases a cluster adds before serving.PhaseModelLoaded.
const (
	PhaseScheduled        = "scheduled"         // Start until the scheduler bound the pod
	PhaseImagePulled      = "image_pulled"      // its Duration is the pull time the kubelet reported
	PhaseContainerStarted = "container_started" // until the container ran
)

// Ready waits until the pod is Ready and the replica reports readiness at
// /ebb/v1/replica, and returns its startup with every cold-start phase. It
// fails as soon as the container ends (with its termination message: the
// replica's error) or the pod is deleted.
func (b *Backend) Ready(ctx context.Context, h replica.Handle) (replica.Startup, error) {
	st, err := decodeState(h)
	if err != nil {
		return replica.Startup{}, err
	}
	var pod *corev1.Pod
	err = b.watch(ctx, st, func(p *corev1.Pod) (bool, error) {
		if p == nil {
			return false, fmt.Errorf("pod %s/%s was deleted", st.Namespace, st.Name)
		}
		pod = p
		if msg := failure(p); msg != "" {
			return false, errors.New(msg)
		}
		return podReady(p), nil
	})
	if err != nil {
		return replica.Startup{}, fmt.Errorf("replica %s failed to start: %w", h.Spec.ID, err)
	}
	in, err := b.readyInfo(ctx, h)
	if err != nil {
		return replica.Startup{}, err
	}
	events, err := b.opts.Client.CoreV1().Events(st.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.uid": string(st.UID)}.String(),
	})
	if err != nil {
		return replica.Startup{}, fmt.Errorf("replica %s: events of pod %s/%s: %w", h.Spec.ID, st.Namespace, st.Name, err)
	}
	return replica.Startup{
		ModelLoadedAt: in.ModelLoadedAt,
		ReadyAt:       in.ReadyAt,
		Artifact:      in.Artifact,
		Phases:        Phases(h.ScheduledAt, pod, events.Items, in.Artifact, in.ModelLoadedAt, in.ReadyAt),
	}, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// info is what a replica says about itself at /ebb/v1/replica.
type info struct {
	ID            string                 `json:"id"`
	ModelLoadedAt time.Time              `json:"modelLoadedAt"`
	ReadyAt       time.Time              `json:"readyAt"`
	Artifact      *serving.ArtifactFetch `json:"artifact"`
}

// readyInfo asks the replica until it reports readyAt; a Ready pod's
// replica normally does at once.
func (b *Backend) readyInfo(ctx context.Context, h replica.Handle) (info, error) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		in, err := b.fetchInfo(ctx, h.Endpoint)
		if err == nil && in.ID != h.Spec.ID {
			err = fmt.Errorf("%s answers as replica %q", h.Endpoint, in.ID)
		} else if err == nil && !in.ReadyAt.IsZero() {
			return in, nil
		}
		last = err
		select {
		case <-t.C:
		case <-ctx.Done():
			return info{}, fmt.Errorf("replica %s: pod is ready but the replica did not report ready (%v): %w", h.Spec.ID, last, ctx.Err())
		}
	}
}

func (b *Backend) fetchInfo(ctx context.Context, endpoint string) (info, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/ebb/v1/replica", nil)
	if err != nil {
		return info{}, err
	}
	resp, err := b.opts.HTTPClient.Do(req)
	if err != nil {
		return info{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return info{}, fmt.Errorf("GET %s/ebb/v1/replica: %s", endpoint, resp.Status)
	}
	var in info
	if err := json.NewDecoder(resp.Body).Decode(&in); err != nil {
		return info{}, fmt.Errorf("replica info: %w", err)
	}
	return in, nil
}

// pulledRE finds the duration in a kubelet "Pulled" event: `Successfully
// pulled image "x" in 1.234s (1.3s including waiting)...`.
var pulledRE = regexp.MustCompile(`^Successfully pulled image ".*?" in ([0-9.]+[a-zµ]+(?:[0-9.]+[a-zµ]+)*)`)

// PullDuration returns the image pull time a kubelet "Pulled" event
// reports: the duration in "Successfully pulled image ... in D", 0 for
// "already present on machine"; ok is false for other messages.
func PullDuration(message string) (d time.Duration, ok bool) {
	if m := pulledRE.FindStringSubmatch(message); m != nil {
		d, err := time.ParseDuration(m[1])
		return d, err == nil
	}
	if strings.Contains(message, "already present on machine") {
		return 0, true
	}
	return 0, false
}

// Phases returns a pod's cold-start phases, in order: scheduled (from
// start, the time Start was called, to the PodScheduled transition), image
// pulled (when the kubelet's Pulled event says, lasting the pull time it
// reports; absent without such an event), container started, artifact
// fetched (when the replica fetched one: art), model loaded and ready. Each
// phase ends at At and lasts until then from the previous
// phase's end, except image pulled whose Duration is the reported pull. The
// apiserver's times have a resolution of one second, so an At earlier than
// the previous phase's end is moved up to it.
func Phases(start time.Time, pod *corev1.Pod, events []corev1.Event, art *serving.ArtifactFetch, modelLoadedAt, readyAt time.Time) []serving.Phase {
	var ps []serving.Phase
	prev := start
	add := func(name string, at time.Time, dur *time.Duration) {
		if at.IsZero() {
			return
		}
		if at.Before(prev) {
			at = prev
		}
		d := at.Sub(prev)
		if dur != nil {
			d = *dur
		}
		ps = append(ps, serving.Phase{Name: name, At: at, Duration: serving.D(d)})
		prev = at
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue {
			add(PhaseScheduled, c.LastTransitionTime.Time, nil)
		}
	}
	var pulled []corev1.Event
	for _, e := range events {
		if e.Reason == "Pulled" && e.InvolvedObject.FieldPath == "spec.containers{"+ContainerName+"}" {
			pulled = append(pulled, e)
		}
	}
	sort.Slice(pulled, func(i, j int) bool { return eventTime(pulled[i]).Before(eventTime(pulled[j])) })
	if n := len(pulled); n > 0 {
		if d, ok := PullDuration(pulled[n-1].Message); ok {
			add(PhaseImagePulled, eventTime(pulled[n-1]), &d)
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != ContainerName {
			continue
		}
		switch {
		case cs.State.Running != nil:
			add(PhaseContainerStarted, cs.State.Running.StartedAt.Time, nil)
		case cs.State.Terminated != nil:
			add(PhaseContainerStarted, cs.State.Terminated.StartedAt.Time, nil)
		}
	}
	if art != nil && !art.FetchedAt.IsZero() {
		at := art.FetchedAt
		if at.Before(prev) {
			at = prev
		}
		ps = append(ps, art.Phase())
		ps[len(ps)-1].At = at
		prev = at
	}
	add(serving.PhaseModelLoaded, modelLoadedAt, nil)
	add(serving.PhaseReady, readyAt, nil)
	return ps
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	}
	return e.FirstTimestamp.Time
}

// watch calls cond with the pod named by st (nil once it is gone or
// replaced by a pod with another UID) now and on every change, until cond
// returns true or an error, or ctx ends.
func (b *Backend) watch(ctx context.Context, st state, cond func(*corev1.Pod) (bool, error)) error {
	pods := b.opts.Client.CoreV1().Pods(st.Namespace)
	sel := fields.OneTermEqualSelector("metadata.name", st.Name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return pods.Watch(ctx, o)
		},
	}
	ours := func(obj any) *corev1.Pod {
		if p, ok := obj.(*corev1.Pod); ok && p.UID == st.UID {
			return p
		}
		return nil
	}
	pre := func(store cache.Store) (bool, error) {
		obj, exists, err := store.GetByKey(st.Namespace + "/" + st.Name)
		if err != nil {
			return false, err
		}
		if !exists {
			return cond(nil)
		}
		return cond(ours(obj))
	}
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, pre, func(ev watch.Event) (bool, error) {
		switch ev.Type {
		case watch.Deleted:
			if p, ok := ev.Object.(*corev1.Pod); ok && p.UID != st.UID {
				return false, nil // another pod of that name
			}
			return cond(nil)
		case watch.Added, watch.Modified:
			return cond(ours(ev.Object))
		}
		return false, nil
	})
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
