// Package kubetest starts a real Kubernetes control plane for tests: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kwok (simulated
// nodes), built from source by hack/build-kube.sh. One cluster is shared by
// all the tests of a test binary: the binary's TestMain calls Main, and each
// test that needs the cluster calls Get.
//
//	func TestMain(m *testing.M) { kubetest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		c := kubetest.Get(t)          // skips (or fails under CI=true) without binaries
//		ns := c.Namespace(t)          // fresh namespace, deleted after the test
//		c.CreateNodes(t, 2, kubetest.NodeSpec{GPUs: 1})
//		...
//	}
//
// The cluster starts on the first Get, so a binary whose tests all skip pays
// nothing, and stops (every process by PID, temp dirs removed) when Main's
// tests are done.
//
// # Networking
//
// Nothing in the cluster is reachable except the apiserver on 127.0.0.1.
// Service ClusterIPs (10.96.0.0/24) are never routed. kwok gives pods IPs in a
// /16 inside 127.0.0.0/8 (127.64.0.0/16 to 127.127.0.0/16, one per running
// cluster, chosen under a lock so parallel test binaries never share one) and
// nodes IPs in 127.63.0.0/16; pod IPs are loopback addresses, so a process
// that binds one is reachable from the test, and traffic to a pod IP can never
// leave the machine.
//
// # The fake kubelet
//
// kwok pods run no containers. Unless Options.NoFakeKubelet is set, the
// cluster runs a fake kubelet that makes pods with a container named "ebb"
// real: for each such pod bound to a kwok node, once kwok has given it a pod
// IP, it runs the container as a local process and keeps the pod's status the
// way a kubelet would. The contract:
//
//   - The container's command (or, when empty, its args) must start with
//     "ebb" (or a path whose base name is "ebb"): that word is replaced by the
//     ebb binary the harness built from ./cmd/ebb (Options.EbbBinary to use
//     another). Container env values (not valueFrom) are passed; the working
//     directory is a temp dir.
//   - "--addr 0.0.0.0:PORT" (or "--addr=0.0.0.0:PORT") is rewritten to bind
//     the pod IP: "--addr <podIP>:PORT". The replica container runs
//     `ebb replica --deployment D --id ID --model M --engine E --addr 0.0.0.0:8080 ...`;
//     model paths must be absolute paths on this machine (or engine echo).
//   - Events, as a kubelet posts them: Pulled ("Successfully pulled image
//     "X" in 0s (0s including waiting)..."), Created, Started, Killing.
//   - Status: phase Pending with the pod IP (kwok) until the process runs;
//     then phase Running with containerStatuses[ebb].state.running.startedAt;
//     Ready and ContainersReady become True once the container's readiness
//     probe (httpGet only) answers 2xx, polled every 100ms.
//   - The process exiting sets the container's state to terminated (exit
//     code, reason Completed or Error, and as message the last lines of its
//     output, as terminationMessagePolicy FallbackToLogsOnError does) and the
//     phase to Succeeded or Failed. Containers are never restarted, whatever
//     the restart policy.
//   - Deletion with a grace period: SIGTERM, SIGKILL after the grace period,
//     then the pod is removed (delete with grace 0), as a kubelet does; the
//     pod stays visible, terminating, until its process is gone. A forced
//     deletion (grace 0) kills the process with SIGKILL at once.
//   - Each process's output goes to Cluster.PodLog(namespace, name).
//
// Pods without an "ebb" container are handled by kwok alone: Running and
// Ready at once, deleted at once.
package kubetest

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options configure the shared cluster; pass them to MainWith.
type Options struct {
	// NoFakeKubelet leaves every pod to kwok: pods become Running and Ready
	// at once and run nothing (scale tests with many pods).
	NoFakeKubelet bool
	// EbbBinary is the ebb executable the fake kubelet runs; default: built
	// from ./cmd/ebb with `go build` while the control plane starts.
	EbbBinary string
	// Logf receives the harness's progress lines; default: discarded unless
	// EBB_KUBETEST_VERBOSE is set, then stderr.
	Logf func(format string, args ...any)
}

// Cluster is a running control plane. Its fields are read-only.
type Cluster struct {
	// Kubeconfig is the path of a kubeconfig file for the cluster admin
	// (system:masters), for kubectl, helm and separate processes.
	Kubeconfig string
	// Host is the apiserver's URL, https://127.0.0.1:PORT.
	Host string
	// Dir holds the cluster's files (etcd data, certs, logs); removed when
	// the cluster stops.
	Dir string
	// BinDir holds the control-plane binaries (and helm, controller-gen).
	BinDir string
	// PodCIDR is the loopback /16 pod IPs come from.
	PodCIDR string
	// StartupTime is how long the control plane took to answer /readyz
	// (and, with the fake kubelet, for the ebb binary to build).
	StartupTime time.Duration

	config    *rest.Config
	clientset *kubernetes.Clientset
	ebbBin    string
	procs     []*proc
	kubelet   *kubelet
	stopFns   []func()
	nodeMu    sync.Mutex
	nodeCount int
}

var (
	mainOpts   Options
	mainCalled bool
	once       sync.Once
	shared     *Cluster
	sharedErr  error
)

// Main runs m's tests with the default Options and exits with their status,
// stopping the cluster if a test started it. Call it from TestMain.
func Main(m *testing.M) { MainWith(m, Options{}) }

// MainWith is Main with options.
func MainWith(m *testing.M, opts Options) {
	mainOpts, mainCalled = opts, true
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

// Get returns the binary's shared cluster, starting it on first use. When the
// binaries are missing it skips the test (run hack/build-kube.sh), or fails
// it when CI=true; any other start failure fails the test.
func Get(t testing.TB) *Cluster {
	t.Helper()
	if !mainCalled {
		t.Fatal("kubetest.Get: the test binary's TestMain must call kubetest.Main(m)")
	}
	once.Do(func() { shared, sharedErr = start(mainOpts) })
	if sharedErr != nil {
		if errMissing(sharedErr) && os.Getenv("CI") != "true" {
			t.Skipf("kubetest: %v", sharedErr)
		}
		t.Fatalf("kubetest: %v", sharedErr)
	}
	return shared
}

// RESTConfig returns a copy of the admin REST config.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.config) }

// Clientset returns a client-go clientset for the cluster admin.
func (c *Cluster) Clientset() *kubernetes.Clientset { return c.clientset }

// EbbBinary is the ebb executable the fake kubelet runs ("" without the
// fake kubelet).
func (c *Cluster) EbbBinary() string { return c.ebbBin }

// PodLog is the file the fake kubelet writes a pod's process output to.
func (c *Cluster) PodLog(namespace, name string) string {
	return filepath.Join(c.Dir, "pods", namespace+"_"+name+".log")
}

// Bin returns the path of a tool in BinDir ("helm", "controller-gen", ...).
func (c *Cluster) Bin(name string) string { return filepath.Join(c.BinDir, name) }

// BinDir returns the directory hack/build-kube.sh builds into:
// $EBB_KUBE_CACHE/bin, else $XDG_CACHE_HOME/ebb-kube/bin, else
// ~/.cache/ebb-kube/bin.
func BinDir() string {
	cache := os.Getenv("EBB_KUBE_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "ebb-kube")
	}
	return filepath.Join(cache, "bin")
}

// missingError says a binary is not built.
type missingError struct{ path string }

func (e missingError) Error() string {
	return fmt.Sprintf("%s is missing: run hack/build-kube.sh to build the control plane", e.path)
}

func errMissing(err error) bool {
	_, ok := err.(missingError)
	return ok
}
