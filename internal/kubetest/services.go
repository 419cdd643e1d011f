package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Bounds of the service proxy.
const (
	// maxServiceConns is the most proxied connections open at once, over
	// every Service; more are refused (reset).
	maxServiceConns = 1024
	// serviceDialTimeout bounds the connection to the chosen pod.
	serviceDialTimeout = 2 * time.Second
)

// serviceCIDR4 returns the loopback /16 the service proxy allocates
// Service addresses from: 127.(X+64).0.0/16 for pod CIDR 127.X.0.0/16. Pod
// CIDRs are 127.64-127.127 (lockPodCIDR), so service ranges are
// 127.128-127.191: never a pod's or a node's address, and unique to the
// cluster holding the pod CIDR's lock.
func serviceCIDR4(podCIDR string) netip.Prefix {
	p, err := netip.ParsePrefix(podCIDR)
	if err != nil {
		panic(fmt.Sprintf("kubetest: pod CIDR %q: %v", podCIDR, err))
	}
	b := p.Addr().As4()
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{127, b[1] + 64, 0, 0}), 16)
}

// ServiceAddr returns the address ("IP:port") on which the fake cluster
// proxies the Service's port, the one the fake kubelet substitutes for
// NAME.NAMESPACE.svc in pods' arguments: connect to it from the test as a
// pod would. The address is fixed from the first call, even before the
// Service exists (connections are refused until then, and while no pod of
// it is ready). It panics without the fake kubelet (Options.NoFakeKubelet).
func (c *Cluster) ServiceAddr(namespace, name string, port int) string {
	if c.kubelet == nil {
		panic("kubetest: ServiceAddr needs the fake kubelet, and Options.NoFakeKubelet is set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return net.JoinHostPort(c.kubelet.services.ensure(ctx, namespace, name).String(), strconv.Itoa(port))
}

// serviceProxy stands in for cluster DNS and kube-proxy: every Service
// with a selector gets a loopback address of its own, and a listener on it
// for each TCP port, which forwards each new connection to a Ready,
// non-terminating pod the selector matches (chosen at random, again for
// every connection), at the port's targetPort. A Service's address is
// fixed for the cluster's life, from the first time anything asks for it,
// even before the Service exists.
type serviceProxy struct {
	cs     kubernetes.Interface
	prefix netip.Prefix
	logf   func(string, ...any)

	pods     corelisters.PodLister // set by register
	services cache.Store

	// mu guards the fields below.
	mu      sync.Mutex
	addrs   map[string]netip.Addr // "ns/name" → address
	next    uint32
	entries map[string]*serviceEntry
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// serviceEntry is one proxied Service.
type serviceEntry struct {
	svc       *corev1.Service
	listeners map[int32]net.Listener // by service port
}

func newServiceProxy(cs kubernetes.Interface, prefix netip.Prefix, logf func(string, ...any)) *serviceProxy {
	return &serviceProxy{
		cs: cs, prefix: prefix, logf: logf,
		addrs: map[string]netip.Addr{}, entries: map[string]*serviceEntry{}, conns: map[net.Conn]struct{}{},
	}
}

// register adds the proxy's informers to f, which its caller starts.
func (p *serviceProxy) register(f informers.SharedInformerFactory) {
	p.pods = f.Core().V1().Pods().Lister()
	inf := f.Core().V1().Services().Informer()
	p.services = inf.GetStore()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.sync(obj) },
		UpdateFunc: func(_, obj any) { p.sync(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if svc, ok := obj.(*corev1.Service); ok {
				p.mu.Lock()
				p.removeLocked(svc.Namespace + "/" + svc.Name)
				p.mu.Unlock()
			}
		},
	})
}

// addr returns the Service's address, allocating it on first use.
func (p *serviceProxy) addr(ns, name string) netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrLocked(ns + "/" + name)
}

func (p *serviceProxy) addrLocked(key string) netip.Addr {
	if a, ok := p.addrs[key]; ok {
		return a
	}
	p.next++
	if p.next >= 1<<16-1 {
		panic("kubetest: the service proxy ran out of addresses in " + p.prefix.String())
	}
	b := p.prefix.Addr().As4()
	a := netip.AddrFrom4([4]byte{b[0], b[1], byte(p.next >> 8), byte(p.next)})
	p.addrs[key] = a
	return a
}

// exists reports whether the Service exists, asking the apiserver when the
// informer has not seen it (yet).
func (p *serviceProxy) exists(ctx context.Context, ns, name string) bool {
	if p.services != nil {
		if _, ok, _ := p.services.GetByKey(ns + "/" + name); ok {
			return true
		}
	}
	if p.cs == nil {
		return false
	}
	_, err := p.cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	return err == nil
}

// ensure proxies the Service now if it exists, without waiting for the
// informer, and returns its address.
func (p *serviceProxy) ensure(ctx context.Context, ns, name string) netip.Addr {
	svc, err := p.cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		p.sync(svc)
	} else if !apierrors.IsNotFound(err) {
		p.logf("service proxy: get service %s/%s: %v", ns, name, err)
	}
	return p.addr(ns, name)
}

// sync makes the listeners of a Service match its ports.
func (p *serviceProxy) sync(obj any) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	key := svc.Namespace + "/" + svc.Name
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if len(svc.Spec.Selector) == 0 {
		p.removeLocked(key) // no selector: nothing to forward to
		return
	}
	e := p.entries[key]
	if e == nil {
		e = &serviceEntry{listeners: map[int32]net.Listener{}}
		p.entries[key] = e
	}
	if e.svc != nil && e.svc.ResourceVersion != "" && e.svc.ResourceVersion == svc.ResourceVersion {
		return
	}
	e.svc = svc.DeepCopy()
	addr := p.addrLocked(key)
	want := map[int32]bool{}
	for _, sp := range svc.Spec.Ports {
		if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
			continue
		}
		want[sp.Port] = true
		if e.listeners[sp.Port] != nil {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(addr.String(), strconv.Itoa(int(sp.Port))))
		if err != nil {
			p.logf("service proxy: %s port %d: %v", key, sp.Port, err)
			continue
		}
		e.listeners[sp.Port] = ln
		p.wg.Add(1)
		go p.accept(ln, key, sp.Port)
	}
	for port, ln := range e.listeners {
		if !want[port] {
			ln.Close()
			delete(e.listeners, port)
		}
	}
}

// removeLocked stops proxying a Service (its address stays reserved).
func (p *serviceProxy) removeLocked(key string) {
	if e := p.entries[key]; e != nil {
		for _, ln := range e.listeners {
			ln.Close()
		}
		delete(p.entries, key)
	}
}

// shutdown closes every listener and connection and waits for the
// proxy's goroutines.
func (p *serviceProxy) shutdown() {
	p.mu.Lock()
	p.closed = true
	for key := range p.entries {
		p.removeLocked(key)
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *serviceProxy) accept(ln net.Listener, key string, port int32) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		e := p.entries[key]
		if p.closed || e == nil || len(p.conns) >= maxServiceConns {
			p.mu.Unlock()
			reset(c)
			continue
		}
		svc := e.svc
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.forward(c, svc, port)
	}
}

// forward connects c to a ready pod of svc and copies both ways until
// both sides are done.
func (p *serviceProxy) forward(c net.Conn, svc *corev1.Service, port int32) {
	defer p.wg.Done()
	defer p.untrack(c)
	target, err := p.pick(svc, port)
	if err != nil {
		p.logf("service proxy: %s/%s:%d: %v", svc.Namespace, svc.Name, port, err)
		reset(c)
		return
	}
	up, err := (&net.Dialer{Timeout: serviceDialTimeout}).Dial("tcp", target)
	if err != nil {
		p.logf("service proxy: %s/%s:%d: %v", svc.Namespace, svc.Name, port, err)
		reset(c)
		return
	}
	if !p.track(up) {
		up.Close()
		reset(c)
		return
	}
	defer p.untrack(up)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(up, c)
		closeWrite(up)
	}()
	_, _ = io.Copy(c, up)
	closeWrite(c)
	<-done
}

func (p *serviceProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *serviceProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		c.Close()
	}
}

// reset closes c with a TCP reset, as a connection to a Service without
// ready endpoints is refused.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// errNoEndpoints says a Service has no ready pod to forward to.
var errNoEndpoints = errors.New("no ready pod")

// pick chooses a Ready, non-terminating pod of svc and returns its
// address for the service port.
func (p *serviceProxy) pick(svc *corev1.Service, port int32) (string, error) {
	if p.pods == nil {
		return "", errNoEndpoints
	}
	pods, err := p.pods.Pods(svc.Namespace).List(labels.SelectorFromSet(svc.Spec.Selector))
	if err != nil {
		return "", err
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == port {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return "", fmt.Errorf("no port %d", port)
	}
	var targets []string
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil || pod.Status.PodIP == "" || !podReady(pod) {
			continue
		}
		ip, err := netip.ParseAddr(pod.Status.PodIP)
		if err != nil || !ip.IsLoopback() {
			continue // the network rule: never dial beyond this machine
		}
		tp, ok := targetPort(pod, sp)
		if !ok {
			continue
		}
		targets = append(targets, net.JoinHostPort(ip.String(), strconv.Itoa(tp)))
	}
	if len(targets) == 0 {
		return "", errNoEndpoints
	}
	return targets[rand.IntN(len(targets))], nil
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// targetPort resolves a service port's targetPort on pod: a number, or the
// name of a container port; unset, the service port itself.
func targetPort(pod *corev1.Pod, sp *corev1.ServicePort) (int, bool) {
	tp := sp.TargetPort
	if tp.StrVal == "" {
		if v := tp.IntValue(); v != 0 {
			return v, true
		}
		return int(sp.Port), true
	}
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == tp.StrVal && (cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP) {
				return int(cp.ContainerPort), true
			}
		}
	}
	return 0, false
}
