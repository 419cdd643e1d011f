package scenarios

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/replica/kube"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// replicaFleet stands in for the replica processes of a namespace whose pods
// run nothing (kwok alone): it listens on port kube.Port of every pod IP
// (loopback addresses) and answers as the pod's replica would: ready, and
// the pod's replica ID with its model-loaded and ready times.
type replicaFleet struct {
	c    *kubetest.Cluster
	ns   string
	logf func(string, ...any)

	// mu guards byIP and lns.
	mu   sync.Mutex
	byIP map[string]string // pod IP → pod name
	lns  map[string]net.Listener

	handshakes atomic.Int64
}

func newReplicaFleet(c *kubetest.Cluster, ns string, logf func(string, ...any)) *replicaFleet {
	return &replicaFleet{c: c, ns: ns, logf: logf, byIP: map[string]string{}, lns: map[string]net.Listener{}}
}

// run follows the namespace's pods until ctx ends, then closes every
// listener.
func (f *replicaFleet) run(ctx context.Context) {
	defer f.closeAll()
	for ctx.Err() == nil {
		w, err := f.c.Clientset().CoreV1().Pods(f.ns).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || p.Status.PodIP == "" {
				continue
			}
			if ev.Type == watch.Deleted {
				f.forget(p)
			} else {
				f.serve(p)
			}
		}
		w.Stop()
	}
}

func (f *replicaFleet) serve(p *corev1.Pod) {
	ip := p.Status.PodIP
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byIP[ip] = p.Name
	if f.lns[ip] != nil {
		return
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(kube.Port)))
	if err != nil {
		f.logf("kube fleet: listen on %s: %v", ip, err)
		return
	}
	f.lns[ip] = ln
	srv := &http.Server{Handler: f.handler(ip), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
}

func (f *replicaFleet) forget(p *corev1.Pod) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byIP[p.Status.PodIP] == p.Name {
		delete(f.byIP, p.Status.PodIP)
	}
}

func (f *replicaFleet) handler(ip string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ebb/v1/replica", func(w http.ResponseWriter, _ *http.Request) {
		f.mu.Lock()
		name := f.byIP[ip]
		f.mu.Unlock()
		if name == "" {
			http.Error(w, "no pod at this address", http.StatusServiceUnavailable)
			return
		}
		f.handshakes.Add(1)
		now := time.Now()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"id": name, "modelLoadedAt": now, "readyAt": now})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	return mux
}

func (f *replicaFleet) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ln := range f.lns {
		ln.Close()
	}
}

func (f *replicaFleet) answered() int64 { return f.handshakes.Load() }

func (f *replicaFleet) listening() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.lns)
}

// procSampler samples a process's CPU time and memory every second.
type procSampler struct {
	p *harness.Proc

	mu       sync.Mutex
	start    uint64
	ticks    uint64
	peakMem  harness.Memory
	lastMem  harness.Memory
	hasStart bool
}

func newProcSampler(p *harness.Proc) *procSampler {
	s := &procSampler{p: p}
	s.sample()
	return s
}

func (s *procSampler) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sample()
		}
	}
}

func (s *procSampler) sample() {
	ticks := s.p.TreeCPUTicks()
	mem := s.p.TreeMemory()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.hasStart {
		s.start, s.hasStart = ticks, true
	}
	s.ticks = ticks
	s.lastMem = mem
	if mem.RSSBytes > s.peakMem.RSSBytes {
		s.peakMem = mem
	}
}

// cpuSeconds returns the CPU time used since the sampler was created
// (clock ticks of 1/100 s).
func (s *procSampler) cpuSeconds() float64 {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return float64(s.ticks-s.start) / 100
}

func (s *procSampler) peak() harness.Memory {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peakMem
}

func (s *procSampler) last() harness.Memory {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastMem
}
