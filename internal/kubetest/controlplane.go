package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ebb-ml/ebb/internal/ebbtest"
)

// adminToken is the static bearer token of the cluster admin.
const adminToken = "ebb-kubetest-admin"

// serviceCIDR is the Service ClusterIP range; never routed, never dialled.
const serviceCIDR = "10.96.0.0/24"

// nodeIP is the address kwok gives its nodes.
const nodeIP = "127.63.0.1"

// proc is one control-plane process.
type proc struct {
	name string
	// path and args start it again (RestartAPIServer).
	path string
	args []string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// stop sends SIGTERM, then SIGKILL after grace, and waits for the exit.
func (p *proc) stop(grace time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log)
	const max = 3000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}

func start(opts Options) (*Cluster, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
		if os.Getenv("EBB_KUBETEST_VERBOSE") != "" {
			logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, "kubetest: "+f+"\n", a...) }
		}
	}
	began := time.Now()
	if opts.EbbBinary == "" {
		opts.EbbBinary = os.Getenv("EBB_KUBETEST_EBB")
	}
	bin := BinDir()
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return nil, missingError{filepath.Join(bin, name)}
		}
	}
	dir, err := os.MkdirTemp("", "ebb-kubetest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, BinDir: bin}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	for _, d := range []string{"logs", "pki", "etcd", "pods", "containers"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	cidr, unlock, err := lockPodCIDR()
	if err != nil {
		return nil, err
	}
	c.PodCIDR = cidr
	c.stopFns = append(c.stopFns, unlock)

	// Build ebb, ebb-cluster and ebb-replica while the control plane starts.
	built := make(chan error, 1)
	if opts.NoFakeKubelet {
		built <- nil
	} else if opts.EbbBinary != "" {
		c.ebbBin = opts.EbbBinary
		built <- nil
	} else {
		c.ebbBin = filepath.Join(dir, "ebb")
		go func() {
			var out bytes.Buffer
			err := ebbtest.BuildAll(context.Background(), "", dir, &out)
			if err != nil {
				err = fmt.Errorf("build ebb for the fake kubelet: %v\n%s", err, out.Bytes())
			}
			built <- err
		}()
	}

	pki, err := writePKI(filepath.Join(dir, "pki"))
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	if err := c.run("etcd", filepath.Join(bin, "etcd"),
		"--name=default",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--unsafe-no-fsync", "--log-level=warn",
	); err != nil {
		return nil, err
	}
	c.Host = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	if err := c.run("kube-apiserver", filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(ports[2]),
		"--cert-dir="+filepath.Join(dir, "pki", "apiserver"),
		"--tls-cert-file="+pki.serverCert, "--tls-private-key-file="+pki.serverKey,
		"--client-ca-file="+pki.caCert,
		"--token-auth-file="+pki.tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pki.saPub,
		"--service-account-signing-key-file="+pki.saKey,
		"--service-cluster-ip-range="+serviceCIDR,
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
		"--kubelet-preferred-address-types=InternalIP", // kwok's kubelet server, for pods/log
	); err != nil {
		return nil, err
	}
	c.config = &rest.Config{
		Host:            c.Host,
		BearerToken:     adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: pki.caPEM},
		QPS:             200,
		Burst:           400,
	}
	if err := c.waitReady(pki.caPEM, 60*time.Second); err != nil {
		return nil, err
	}
	logf("apiserver ready after %v", time.Since(began))
	if c.clientset, err = kubernetes.NewForConfig(c.config); err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.Host, pki.caPEM); err != nil {
		return nil, err
	}
	if err := c.run("kube-controller-manager", filepath.Join(bin, "kube-controller-manager"),
		"--kubeconfig="+c.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*",
		"--service-account-private-key-file="+pki.saKey,
		"--root-ca-file="+pki.caCert,
		"--service-cluster-ip-range="+serviceCIDR,
		"--concurrent-gc-syncs=5",
	); err != nil {
		return nil, err
	}
	if err := c.run("kube-scheduler", filepath.Join(bin, "kube-scheduler"),
		"--kubeconfig="+c.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
	); err != nil {
		return nil, err
	}
	kwokConfig, err := writeKwokConfig(dir, !opts.NoFakeKubelet)
	if err != nil {
		return nil, err
	}
	gw, _, _ := strings.Cut(cidr, "/")
	gw = strings.TrimSuffix(gw, ".0") + ".1/16"
	kwokArgs := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--manage-nodes-with-annotation-selector=" + NodeAnnotation + "=" + NodeAnnotationValue,
		"--cidr=" + gw,
		"--node-ip=" + nodeIP,
		"--node-lease-duration-seconds=40",
	}
	if kwokConfig != "" {
		kwokArgs = append(kwokArgs, kwokConfig)
	}
	if !opts.NoFakeKubelet {
		logArgs, err := c.servePodLogs()
		if err != nil {
			return nil, err
		}
		kwokArgs = append(kwokArgs, logArgs...)
	}
	if err := c.run("kwok", filepath.Join(bin, "kwok"), kwokArgs...); err != nil {
		return nil, err
	}
	if err := <-built; err != nil {
		return nil, err
	}
	if !opts.NoFakeKubelet {
		k := newKubelet(c, logf)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); k.run(ctx) }()
		c.kubelet = k
		c.stopFns = append(c.stopFns, func() { cancel(); <-done; k.killAll() })
		c.shipPodLogs(logf)
	}
	c.StartupTime = time.Since(began)
	logf("cluster up in %v (dir %s, pod CIDR %s)", c.StartupTime, dir, cidr)
	ok = true
	return c, nil
}

// run starts a control-plane process with its output in logs/NAME.log.
func (c *Cluster) run(name, path string, args ...string) error {
	p, err := spawn(c.Dir, name, path, args, os.O_TRUNC)
	if err != nil {
		return err
	}
	c.procMu.Lock()
	c.procs = append(c.procs, p)
	c.procMu.Unlock()
	return nil
}

// spawn starts path with args in dir, its output in dir/logs/NAME.log
// (truncated or appended to, as logFlag says: os.O_TRUNC or os.O_APPEND).
func spawn(dir, name, path string, args []string, logFlag int) (*proc, error) {
	logPath := filepath.Join(dir, "logs", name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|logFlag, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, path: path, args: args, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// snapshot returns the control-plane processes.
func (c *Cluster) snapshot() []*proc {
	c.procMu.Lock()
	defer c.procMu.Unlock()
	return slices.Clone(c.procs)
}

// waitReady polls the apiserver's /readyz until it answers ok, failing early
// when etcd or the apiserver exits.
func (c *Cluster) waitReady(caPEM []byte, timeout time.Duration) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	defer client.CloseIdleConnections()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, _ := http.NewRequest(http.MethodGet, c.Host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/readyz: %s", resp.Status)
		}
		last = err
		procs := c.snapshot()
		for _, p := range procs {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited during startup; its log ends with:\n%s", p.name, p.logTail())
			default:
			}
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			tail := ""
			for _, p := range procs {
				if p.name == "kube-apiserver" {
					tail = p.logTail()
				}
			}
			return fmt.Errorf("apiserver not ready after %v: %v; its log ends with:\n%s", timeout, last, tail)
		}
	}
}

// Stop stops the fake kubelet's processes and every control-plane process
// (in reverse start order, by PID), then removes Dir unless
// EBB_KUBETEST_KEEP is set. Main calls it; tests do not.
func (c *Cluster) Stop() {
	for i := len(c.stopFns) - 1; i >= 0; i-- {
		c.stopFns[i]()
	}
	c.stopFns = nil
	c.procMu.Lock()
	procs := c.procs
	c.procs = nil
	c.procMu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(5 * time.Second)
	}
	if os.Getenv("EBB_KUBETEST_KEEP") != "" {
		fmt.Fprintf(os.Stderr, "kubetest: kept %s\n", c.Dir)
		return
	}
	_ = os.RemoveAll(c.Dir)
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// lockPodCIDR picks a loopback /16 for pod IPs that no other running
// cluster on this machine uses, holding a lock file until unlock.
func lockPodCIDR() (cidr string, unlock func(), err error) {
	for octet := 64; octet < 128; octet++ {
		path := filepath.Join(os.TempDir(), fmt.Sprintf("ebb-kubetest-127.%d.lock", octet))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return "", nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue
			}
			return "", nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return fmt.Sprintf("127.%d.0.0/16", octet), func() { f.Close() }, nil
	}
	return "", nil, errors.New("all 64 loopback pod CIDRs (127.64-127.127) are taken by other test clusters")
}
