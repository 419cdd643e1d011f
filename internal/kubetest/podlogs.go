package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"
)

// Pod logs through the apiserver (kubectl logs, client-go's GetLogs):
//
// The apiserver serves pods/log by asking the pod's node's kubelet, at the
// node's InternalIP (--kubelet-preferred-address-types) and
// status.daemonEndpoints port, for /containerLogs/NS/POD/CONTAINER. kwok
// runs that kubelet server (--server-address, --node-port) and answers from
// a log file in the CRI format a container runtime writes ("<RFC 3339 time>
// stdout F <line>"), which a kwok Logs object of the same name as the pod
// names (--enable-crds=Logs, kwok's CRD installed first). The fake kubelet
// writes each process's raw output to Cluster.PodLog; the log shipper here
// plays the runtime's log driver: for each pod the fake kubelet runs, it
// copies new output into the pod's CRI log (Cluster.containerLog) every
// logShipEvery and creates the pod's Logs object, owned by the pod so that
// it goes with it.
//
// kwok cannot ask a runtime whether the container still runs, so a followed
// log stays open until the client goes away; clients end a follow
// themselves when the container ends (replica/kube does).

// logShipEvery is how often the shipper copies new output.
const logShipEvery = 50 * time.Millisecond

// maxLogLine bounds one CRI line; longer output is split into partial
// ("P") lines, as runtimes split it.
const maxLogLine = 16 << 10

var (
	crdGVR  = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	logsGVR = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "logs"}
)

// logsCRD is kwok's Logs CRD (kustomize/crd/bases/kwok.x-k8s.io_logs.yaml
// in sigs.k8s.io/kwok v0.7.0) with its schema cut to what kwok reads.
const logsCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: logs.kwok.x-k8s.io
spec:
  group: kwok.x-k8s.io
  names:
    kind: Logs
    listKind: LogsList
    plural: logs
    singular: logs
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources:
      status: {}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
`

// containerLog is the CRI-format log file of a pod (one per pod UID).
func (c *Cluster) containerLog(namespace, name string, uid types.UID) string {
	return filepath.Join(c.Dir, "containers", namespace+"_"+name+"_"+string(uid)+".log")
}

// installLogsCRD creates kwok's Logs CRD and waits until it is served.
func installLogsCRD(ctx context.Context, dyn dynamic.Interface) error {
	crd := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(logsCRD), &crd.Object); err != nil {
		return err
	}
	if _, err := dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create kwok's Logs CRD: %w", err)
	}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := dyn.Resource(crdGVR).Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			if m, _ := c.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("kwok's Logs CRD not established: %w", err)
	}
	return nil
}

// logShipper keeps a CRI log and a kwok Logs object for each pod the fake
// kubelet runs.
type logShipper struct {
	c    *Cluster
	dyn  dynamic.Interface
	logf func(format string, args ...any)

	// mu guards pods.
	mu   sync.Mutex
	pods map[types.UID]chan struct{} // closed when the pod is deleted
	wg   sync.WaitGroup
}

func newLogShipper(c *Cluster, dyn dynamic.Interface, logf func(string, ...any)) *logShipper {
	return &logShipper{c: c, dyn: dyn, logf: logf, pods: map[types.UID]chan struct{}{}}
}

// run ships logs until ctx ends, then waits for every pod's shipping to
// finish.
func (s *logShipper) run(ctx context.Context) {
	f := informers.NewSharedInformerFactory(s.c.clientset, 0)
	inf := f.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.add(ctx, obj) },
		UpdateFunc: func(_, obj any) { s.add(ctx, obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				s.deleted(pod.UID)
			}
		},
	})
	f.Start(ctx.Done())
	<-ctx.Done()
	f.Shutdown()
	s.wg.Wait()
}

func (s *logShipper) add(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || !ours(pod) || pod.Spec.NodeName == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pods[pod.UID]; ok {
		return
	}
	gone := make(chan struct{})
	s.pods[pod.UID] = gone
	ns, name, uid := pod.Namespace, pod.Name, pod.UID
	s.wg.Go(func() { s.ship(ctx, ns, name, uid, gone) })
}

func (s *logShipper) deleted(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gone, ok := s.pods[uid]; ok {
		close(gone)
		delete(s.pods, uid)
	}
}

// ship creates the pod's CRI log and Logs object, then copies the fake
// kubelet's output into the log until the pod is gone (after a last copy)
// or ctx ends.
func (s *logShipper) ship(ctx context.Context, ns, name string, uid types.UID, gone <-chan struct{}) {
	path := s.c.containerLog(ns, name, uid)
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.logf("pod logs %s/%s: %v", ns, name, err)
		return
	}
	defer out.Close()
	if err := s.putLogs(ctx, ns, name, uid, path); err != nil {
		if ctx.Err() == nil {
			s.logf("pod logs %s/%s: %v", ns, name, err)
		}
		return
	}
	cv := &criWriter{w: out}
	var off int64
	copyNew := func() {
		in, err := os.Open(s.c.PodLog(ns, name))
		if err != nil {
			return // the process has not started yet
		}
		defer in.Close()
		n, err := cv.copyFrom(io.NewSectionReader(in, off, 1<<62))
		off += n
		if err != nil {
			s.logf("pod logs %s/%s: %v", ns, name, err)
		}
	}
	t := time.NewTicker(logShipEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			copyNew()
		case <-gone:
			copyNew()
			cv.flush()
			return
		case <-ctx.Done():
			return
		}
	}
}

// putLogs creates (or points at path) the kwok Logs object of the pod,
// owned by it.
func (s *logShipper) putLogs(ctx context.Context, ns, name string, uid types.UID, path string) error {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1",
		"kind":       "Logs",
		"metadata": map[string]any{
			"name":      name,
			"namespace": ns,
			"ownerReferences": []any{map[string]any{
				"apiVersion": "v1", "kind": "Pod", "name": name, "uid": string(uid),
			}},
		},
		"spec": map[string]any{"logs": []any{map[string]any{"logsFile": path, "follow": true}}},
	}}
	res := s.dyn.Resource(logsGVR).Namespace(ns)
	_, err := res.Create(ctx, obj, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	// A pod of the same name before this one: point its object here.
	return retryOnConflict(ctx, func() error {
		cur, err := res.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		obj.SetResourceVersion(cur.GetResourceVersion())
		_, err = res.Update(ctx, obj, metav1.UpdateOptions{})
		return err
	})
}

func retryOnConflict(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if !apierrors.IsConflict(err) || ctx.Err() != nil {
			return err
		}
	}
}

// criWriter writes raw output as CRI log lines: full lines tagged F,
// pieces of longer ones tagged P.
type criWriter struct {
	w       io.Writer
	pending []byte // the start of a line not yet ended
}

// copyFrom reads all of r and writes its complete lines; it returns how
// many bytes it read.
func (cv *criWriter) copyFrom(r io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		m, err := r.Read(buf)
		n += int64(m)
		if werr := cv.write(buf[:m]); werr != nil {
			return n, werr
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func (cv *criWriter) write(p []byte) error {
	cv.pending = append(cv.pending, p...)
	for {
		i := bytes.IndexByte(cv.pending, '\n')
		if i < 0 {
			break
		}
		if err := cv.line("F", cv.pending[:i+1]); err != nil {
			return err
		}
		cv.pending = cv.pending[i+1:]
	}
	for len(cv.pending) > maxLogLine {
		if err := cv.line("P", cv.pending[:maxLogLine]); err != nil {
			return err
		}
		cv.pending = cv.pending[maxLogLine:]
	}
	cv.pending = bytes.Clone(cv.pending)
	return nil
}

// flush writes an unfinished last line as a full one.
func (cv *criWriter) flush() {
	if len(cv.pending) > 0 {
		_ = cv.line("F", append(cv.pending, '\n'))
		cv.pending = nil
	}
}

func (cv *criWriter) line(tag string, content []byte) error {
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	b := make([]byte, 0, len(ts)+len(tag)+10+len(content)+1)
	b = append(append(append(b, ts...), " stdout "+tag+" "...), content...)
	if tag == "P" {
		b = append(b, '\n')
	}
	_, err := cv.w.Write(b)
	return err
}

// servePodLogs installs kwok's Logs CRD and returns the kwok flags that
// serve pod logs: its kubelet server on the nodes' IP, at a free port the
// nodes advertise, reading Logs objects.
func (c *Cluster) servePodLogs() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dyn, err := dynamic.NewForConfig(c.config)
	if err != nil {
		return nil, err
	}
	if err := installLogsCRD(ctx, dyn); err != nil {
		return nil, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	port := fmt.Sprint(ports[0])
	return []string{"--server-address=" + nodeIP + ":" + port, "--node-port=" + port, "--enable-crds=Logs"}, nil
}

// shipPodLogs starts the log shipper; the cluster's Stop stops it.
func (c *Cluster) shipPodLogs(logf func(string, ...any)) {
	dyn, err := dynamic.NewForConfig(c.config)
	if err != nil {
		logf("pod logs: %v", err)
		return
	}
	s := newLogShipper(c, dyn, logf)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.run(ctx) }()
	c.stopFns = append(c.stopFns, func() { cancel(); <-done })
}
