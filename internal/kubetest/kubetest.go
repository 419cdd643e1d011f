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
// With the fake kubelet, a service proxy stands in for cluster DNS and
// kube-proxy: each Service with a selector gets a loopback address of its
// own, from 127.(X+64).0.0/16 for pod CIDR 127.X.0.0/16 (so 127.128-127.191:
// never a pod's or a node's, and as unique as the pod CIDR), with a listener
// on each TCP port. Each new connection goes to a Ready, non-terminating pod
// the selector matches, chosen again for every connection, at the port's
// targetPort (a number or a container port's name): when the pod it reached
// goes, the next connection reaches a ready one. No ready pod: the
// connection is reset. Cluster.ServiceAddr gives a Service port's address
// to tests. Services without a selector are not proxied. At most 1024
// proxied connections are open at once; everything stops with the cluster.
//
// # The fake kubelet
//
// kwok pods run no containers. Unless Options.NoFakeKubelet is set, the
// cluster runs a fake kubelet that makes real the pods with a container
// named "ebb", or with the annotation ContainerAnnotation naming their
// container (the Helm chart's "operator" and "gateway"; InstallChart sets
// it): for each such pod bound to a kwok node, once kwok has given it a pod
// IP, it runs that one container as a local process and keeps the pod's
// status the way a kubelet would. Other containers and init containers are
// ignored. The contract:
//
//   - The container's command (or, when empty, the image's entrypoint, which
//     is ebb) must start with "ebb", "ebb-cluster" or "ebb-replica" (or a
//     path with that base name), the image's three binaries: "ebb" is
//     replaced by the ebb binary the harness built from ./cmd/ebb
//     (Options.EbbBinary to use another), "ebb-cluster" (the chart's
//     operator and gateway) by the ebb-cluster beside it, or by ebb when
//     there is none, "ebb-replica" by the ebb-replica beside it, or by `ebb
//     replica` when there is none. ebb-cluster and ebb-replica are built
//     from ./cmd with ebb.
//     The working directory is a directory of the pod's own.
//   - Environment, as a kubelet builds it: envFrom (secretRef, configMapRef,
//     with prefix), then env in order, $(VAR) references expanded (in env
//     values, command and args); valueFrom fieldRef (metadata.name,
//     .namespace, .uid, .labels['K'], .annotations['K'], spec.nodeName,
//     spec.serviceAccountName, status.podIP, status.hostIP), resourceFieldRef,
//     secretKeyRef and configMapKeyRef, read through the API. A missing
//     Secret, ConfigMap or key that is not optional keeps the container
//     waiting with reason CreateContainerConfigError (and a Failed event),
//     retried every 100ms, as a kubelet retries; a missing volume source keeps
//     it waiting in ContainerCreating with a FailedMount event. The process
//     also inherits the test's environment (PATH, library paths...), except
//     KUBECONFIG and KUBERNETES_*.
//   - API access: KUBECONFIG names a kubeconfig for the apiserver, its CA,
//     and the pod's namespace, standing in for the service-account token
//     mount that in-cluster config reads (ebb's commands use $KUBECONFIG
//     when it is set). Its credentials are those a real pod would have: the
//     token of the pod's service account (TokenRequest, bound to the pod)
//     when the container mounts one at /var/run/secrets/kubernetes.io/serviceaccount
//     (admission adds that mount unless automountServiceAccountToken is
//     false), else none (anonymous). So the chart's RBAC applies to it.
//   - Volumes: each volumeMount maps to a local directory: hostPath, one per
//     (node, path), shared by the pods of that node (a node-level cache is
//     shared as on a real node); emptyDir, one per pod, removed when the pod
//     is gone; persistentVolumeClaim, one per (namespace, claim), kept for the
//     cluster's life; configMap, secret, downwardAPI and projected (the
//     service-account token among them), one per pod, their files written at
//     each start in a kubelet's layout (each file a symlink through ..data,
//     swapped at once); secret and configMap volumes follow their source
//     while the process runs (polled every 500ms), so a renewed certificate
//     or a rotated token reaches a running process. subPath is honoured.
//     Other volume types fail the container.
//   - Path rewriting, since the process has no mount namespace: an argument
//     or env value that is a mountPath, or starts with mountPath + "/", is
//     rewritten to the local directory (the longest mountPath first); so is
//     the PATH of a "--flag=PATH" argument and of a "file://PATH" URL. A path
//     below a mountPath that already exists on this machine (a test's own
//     file under /tmp, where the chart mounts an emptyDir) is left alone.
//     With a volume at /tmp, TMPDIR names its directory. The rule is blind
//     to meaning: a value that names a path on the node rather than in the
//     container (the operator's --replica-artifact-cache-path, under its
//     /var/lib/ebb mount) is rewritten too. Where such a value ends up as
//     the path of another pod's hostPath volume, the kubelet maps it back to
//     the path the first process saw before choosing the node's directory,
//     so replica pods share their node's cache whichever operator made them
//     (their spec shows the rewritten path).
//   - Addresses: the listen address of --addr and of any --*-addr flag
//     ("--addr=:P", "--grpc-addr 0.0.0.0:P", "[::]:P") becomes the pod
//     IP's: "--addr=<podIP>:P". Service host names in arguments and env
//     values, NAME.NS.svc and NAME.NS.svc.cluster.local, become the service
//     proxy's address of that Service (the port stays: the proxy listens on
//     the service ports); so do NAME and NAME.NS as the host of a URL
//     ("http://NAME:8090"), when that Service exists. The replica container
//     runs `ebb-replica --deployment D --id ID --model M --engine E --addr 0.0.0.0:8080 ...`;
//     model paths must be absolute paths on this machine (or engine echo).
//   - Events, as a kubelet posts them: Pulled ("Successfully pulled image
//     "X" in 0s (0s including waiting)..."), Created, Started, Killing,
//     BackOff, Failed.
//   - Status: phase Pending with the pod IP (kwok) until the process runs;
//     then phase Running with the container's state.running.startedAt;
//     Ready and ContainersReady become True once the container's readiness
//     probe (httpGet only; https without verifying the certificate, as a
//     kubelet does) answers 2xx or 3xx, polled every 100ms; a pod stays
//     Ready until its process exits (readiness is not probed again).
//   - The process exiting: with restartPolicy Never (OnFailure, exit 0),
//     the container's state becomes terminated (exit code, reason Completed
//     or Error, and as message the last lines of its output, as
//     terminationMessagePolicy FallbackToLogsOnError does) and the phase
//     Succeeded or Failed. With Always (OnFailure, non-zero exit), the
//     container restarts in the same pod after a back-off (1s, doubling to
//     30s; waiting reason CrashLoopBackOff, restartCount and lastState as a
//     kubelet reports them), so that a crashing Deployment pod is not
//     replaced by a storm of new pods.
//   - Deletion with a grace period: SIGTERM, SIGKILL after the grace period,
//     then the pod is removed (delete with grace 0), as a kubelet does; the
//     pod stays visible, terminating, until its process is gone. A forced
//     deletion (grace 0) kills the process with SIGKILL at once.
//   - Each process's output goes to Cluster.PodLog(namespace, name);
//     Cluster.PodProcess returns the argv and environment it ran with.
//
// Pods the fake kubelet does not run are handled by kwok alone: Running and
// Ready at once, deleted at once.
//
// # The Helm chart
//
// InstallChart renders deploy/helm/ebb, applies it, and waits for
// its operator and gateway pods, which the fake kubelet runs from the
// rendered args and env: tests talk to the gateway Service as clients of a
// real installation would (Release.GatewayURL).
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
	// EbbBinary is the ebb executable the fake kubelet runs, with the
	// ebb-cluster and ebb-replica beside it (if any) for the chart's pods
	// and replica pods; default: $EBB_KUBETEST_EBB, else the three built
	// from ./cmd/ebb, ./cmd/ebb-cluster and ./cmd/ebb-replica (as make
	// build does) while the control plane starts.
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
	// procMu guards procs, which RestartAPIServer changes.
	procMu    sync.Mutex
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
func MainWith(m *testing.M, opts Options) { os.Exit(Run(m, opts)) }

// Run is MainWith for a TestMain that has more to clean up: it runs m's
// tests, stops the cluster if a test started it, and returns the exit
// code instead of exiting.
func Run(m *testing.M, opts Options) int {
	mainOpts, mainCalled = opts, true
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	return code
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
