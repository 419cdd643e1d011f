package kube

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ebb-ml/ebb/internal/replica"
)

var _ replica.Logger = (*Backend)(nil)

// Logs streams the log of the replica pod's container through the
// apiserver (pods/log, which the node's kubelet serves). With opts.Follow
// the stream also ends once the container has terminated or the pod is
// gone, whatever the kubelet does, so a follow never outlives its replica.
func (b *Backend) Logs(ctx context.Context, h replica.Handle, opts replica.LogOptions) (io.ReadCloser, error) {
	st, err := decodeState(h)
	if err != nil {
		return nil, err
	}
	pods := b.opts.Client.CoreV1().Pods(st.Namespace)
	p, err := pods.Get(ctx, st.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("replica %s: pod %s/%s is gone: %w", h.Spec.ID, st.Namespace, st.Name, replica.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("replica %s: get pod %s/%s: %w", h.Spec.ID, st.Namespace, st.Name, err)
	case p.UID != st.UID:
		return nil, fmt.Errorf("replica %s: pod %s/%s was replaced: %w", h.Spec.ID, st.Namespace, st.Name, replica.ErrNotFound)
	}
	lo := &corev1.PodLogOptions{Container: ContainerName, Follow: opts.Follow}
	if opts.TailLines > 0 {
		lo.TailLines = ptr(opts.TailLines)
	}
	if !opts.Follow {
		rc, err := pods.GetLogs(st.Name, lo).Stream(ctx)
		if err != nil {
			return nil, fmt.Errorf("replica %s: logs of pod %s/%s: %w", h.Spec.ID, st.Namespace, st.Name, err)
		}
		return rc, nil
	}
	sctx, cancel := context.WithCancel(ctx)
	rc, err := pods.GetLogs(st.Name, lo).Stream(sctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("replica %s: logs of pod %s/%s: %w", h.Spec.ID, st.Namespace, st.Name, err)
	}
	f := &podFollow{rc: rc, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		// Wait returns when the container ends or the pod is gone (or
		// sctx ends). A kubelet ends the stream itself then; one that does
		// not (kwok) is cut off after followGrace, which leaves time for
		// the output still in flight.
		if _, err := b.Wait(sctx, h); err != nil {
			return
		}
		f.mu.Lock()
		f.exited = true
		f.mu.Unlock()
		t := time.NewTimer(followGrace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-sctx.Done():
		}
	}()
	return f, nil
}

// followGrace is how long a followed log stays open after its container
// ended, for the output still on its way.
const followGrace = time.Second

// podFollow is a followed pod log that ends with its container.
type podFollow struct {
	rc     io.ReadCloser
	cancel context.CancelFunc
	done   chan struct{}

	// mu guards exited.
	mu     sync.Mutex
	exited bool
}

func (f *podFollow) Read(p []byte) (int, error) {
	n, err := f.rc.Read(p)
	if err != nil {
		f.mu.Lock()
		exited := f.exited
		f.mu.Unlock()
		if exited {
			return n, io.EOF
		}
	}
	return n, err
}

func (f *podFollow) Close() error {
	f.cancel()
	err := f.rc.Close()
	<-f.done
	return err
}
