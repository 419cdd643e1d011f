package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/internal/control"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/replica/kube"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

type operatorOptions struct {
	kube           kubeOptions
	addr           string
	leaderElect    bool
	leaderID       string
	image          string
	drainTimeout   time.Duration
	workers        int
	logLevel       string
	leaseDuration  time.Duration
	renewDeadline  time.Duration
	retryPeriod    time.Duration
	replicaOptions replicaPodOptions
	warmPoolClass  string
}

func newOperatorCmd() *cobra.Command {
	o := operatorOptions{}
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Run the Kubernetes operator: ModelDeployments to replica pods, scaled 0:N",
		Long: `Operator reconciles the ModelDeployments of one namespace: it runs ebb's
control loop (the one ebb up runs) with replicas as pods, autoscaled on the
demand that ebb gateways report to it (--addr serves their reports, /healthz,
/readyz and /metrics). Run two for availability: leader election makes one
act; /readyz answers only on the leader, so the operator's Service sends
gateways' reports to it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runOperator(cmd.Context(), o) },
	}
	f := cmd.Flags()
	addKubeFlags(f, &o.kube)
	f.StringVar(&o.addr, "addr", ":8090", "address for the demand API, /healthz, /readyz and /metrics")
	f.BoolVar(&o.leaderElect, "leader-elect", true, "elect a leader among operator replicas (a Lease in the namespace); only the leader acts")
	f.StringVar(&o.leaderID, "leader-election-id", "ebb-operator", "name of the leader election Lease")
	f.DurationVar(&o.leaseDuration, "lease-duration", 15*time.Second, "leader election: how long a lease holds without renewal")
	f.DurationVar(&o.renewDeadline, "renew-deadline", 10*time.Second, "leader election: how long the leader retries renewing before giving up")
	f.DurationVar(&o.retryPeriod, "retry-period", 2*time.Second, "leader election: how often candidates try to acquire the lease")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "how long a stopping replica may finish its in-flight requests")
	f.IntVar(&o.workers, "workers", 4, "concurrent reconciles")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	addReplicaPodFlags(f, &o.replicaOptions)
	f.StringVar(&o.warmPoolClass, "warm-pool-priority-class", "", "PriorityClass of warm-pool placeholder pods (spec.coldStart.warmPool): negative value, preemptionPolicy Never; the Helm chart creates one. Empty: no warm pools (the operator has no cluster-wide rights to create the class)")
	return cmd
}

func runOperator(ctx context.Context, o operatorOptions) error {
	log, err := newUpLogger(o.logLevel)
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, ns, err := o.kube.load()
	if err != nil {
		return err
	}
	ctrl.SetLogger(logrFromSlog(log))
	scheme, err := operator.NewScheme()
	if err != nil {
		return err
	}
	leaseDuration, renewDeadline, retryPeriod := o.leaseDuration, o.renewDeadline, o.retryPeriod
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme:                        scheme,
		Cache:                         operator.CacheOptions(ns),
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              o.leaderID,
		LeaderElectionNamespace:       ns,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &leaseDuration,
		RenewDeadline:                 &renewDeadline,
		RetryPeriod:                   &retryPeriod,
		GracefulShutdownTimeout:       ptrTo(o.drainTimeout + 10*time.Second),
	})
	if err != nil {
		return fmt.Errorf("operator: %w", err)
	}
	backend, handle, err := newPodBackend(mgr, ns, o.replicaOptions, log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	op, err := operator.New(mgr, backend, handle, operator.Options{
		Namespace: ns,
		Workers:   o.workers,
		Logger:    log,
		ColdStart: operator.ColdStartOptions{
			Image:                 o.replicaOptions.image,
			ImagePullPolicy:       corev1.PullPolicy(o.replicaOptions.pullPolicy),
			WarmPoolPriorityClass: o.warmPoolClass,
		},
		Control: control.Options{
			Logger:       log,
			Metrics:      control.NewMetrics(reg),
			DrainTimeout: o.drainTimeout,
		},
	})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("/", op.Handler())
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w (pick another address with --addr)", o.addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ln) }()
	defer srv.Close()
	log.Info("ebb operator starting", "addr", ln.Addr().String(), "namespace", ns, "leaderElection", o.leaderElect, "version", version)

	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(ctx) }()
	select {
	case err = <-mgrDone:
	case err = <-srvDone:
		stop()
		<-mgrDone
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("operator stopped: %w", err)
	}
	log.Info("ebb operator stopped; replica pods keep running")
	return nil
}

// kubeOptions say which cluster and namespace a command works in.
type kubeOptions struct {
	kubeconfig string
	namespace  string
	qps        float32
	burst      int
}

func addKubeFlags(f *pflag.FlagSet, o *kubeOptions) {
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; default $KUBECONFIG, the in-cluster service account, then ~/.kube/config")
	f.StringVarP(&o.namespace, "namespace", "n", "", "namespace whose ModelDeployments to serve; default $POD_NAMESPACE, the service account's, then the kubeconfig context's")
	f.Float32Var(&o.qps, "kube-api-qps", 100, "most Kubernetes API requests per second")
	f.IntVar(&o.burst, "kube-api-burst", 200, "Kubernetes API request burst")
}

// load returns the REST config and the namespace.
func (o kubeOptions) load() (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	var cfg *rest.Config
	var err error
	if o.kubeconfig == "" && os.Getenv("KUBECONFIG") == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = cc.ClientConfig()
	}
	if err != nil {
		return nil, "", fmt.Errorf("no Kubernetes cluster to talk to: %w (give --kubeconfig, set $KUBECONFIG, or run in a pod)", err)
	}
	cfg.QPS, cfg.Burst = o.qps, o.burst
	cfg.UserAgent = "ebb/" + version
	ns := o.namespace
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if ns == "" {
		if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			ns = strings.TrimSpace(string(b))
		}
	}
	if ns == "" {
		if n, _, err := cc.Namespace(); err == nil {
			ns = n
		}
	}
	if ns == "" {
		ns = "default"
	}
	return cfg, ns, nil
}

func ptrTo[T any](v T) *T { return &v }

// logrFromSlog routes controller-runtime's logs to log.
func logrFromSlog(log *slog.Logger) logr.Logger { return logr.FromSlogHandler(log.Handler()) }

// replicaPodOptions configure the replica pods.
type replicaPodOptions struct {
	image      string
	pullPolicy string
}

func addReplicaPodFlags(f *pflag.FlagSet, o *replicaPodOptions) {
	f.StringVar(&o.image, "replica-image", kube.DefaultImage, "image of replica pods (a ModelDeployment's spec.template.image overrides it)")
	f.StringVar(&o.pullPolicy, "replica-image-pull-policy", "", "image pull policy of replica pods: Always, IfNotPresent or Never; default Kubernetes'")
}

// newPodBackend returns the pod backend, its pods customized by their
// ModelDeployments, and the function that rebuilds handles from its pods.
func newPodBackend(mgr manager.Manager, ns string, o replicaPodOptions, log *slog.Logger) (*kube.Backend, operator.PodHandle, error) {
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return nil, nil, fmt.Errorf("operator: kubernetes client: %w", err)
	}
	pods := operator.NewPodCustomizer(mgr.GetCache(), mgr.GetScheme(), ns)
	b, err := kube.New(kube.Options{
		Client:          cs,
		Namespace:       ns,
		Image:           o.image,
		ImagePullPolicy: corev1.PullPolicy(o.pullPolicy),
		Template: func(_ replica.Spec, pod *corev1.Pod) {
			if err := pods.Customize(context.Background(), pod); err != nil {
				log.Warn("replica pod without its ModelDeployment's overrides", "pod", pod.Name, "err", err)
			}
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return b, operator.KubeHandle, nil
}
