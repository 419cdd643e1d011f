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
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/certs"
	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/ebb-ml/ebb/internal/control"
	"github.com/ebb-ml/ebb/internal/drift"
	"github.com/ebb-ml/ebb/internal/home"
	"github.com/ebb-ml/ebb/internal/logging"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/replica/kube"
	"github.com/ebb-ml/ebb/internal/reqstats"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"github.com/ebb-ml/ebb/internal/ui"
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

	// The registry and admin API (the same as ebb up's).
	storeDSN      string
	dataDir       string
	followAliases time.Duration
	registry      home.RegistryOptions
	jobs          home.JobsFlags   // --jobs-concurrency, --jobs-queue
	tracing       telemetry.Config // --otlp-*, --trace-sample-ratio (home/tracing.go), passed to replica pods too

	limits connlimit.Limits
	tls    certs.Files
	auth   operatorAuthOptions // operator_auth.go
}

func newOperatorCmd() *cobra.Command {
	o := operatorOptions{}
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Run the Kubernetes operator: ModelDeployments to replica pods, scaled 0:N",
		Long: `Operator reconciles the ModelDeployments of one namespace: it runs ebb's
control loop (the one ebb up runs) with replicas as pods, autoscaled on the
demand that ebb gateways report to it. --addr serves the same admin API as
ebb up (/v1/deployments are the namespace's ModelDeployments; /v1/models is
the registry, kept in PostgreSQL with --store-dsn or SQLite in --data-dir),
the gateways' reports, /healthz, /readyz and /metrics. Replica pods fetch
registry artifacts themselves (--artifacts names the store) through a cache
shared by the pods of a node. Run two for availability: leader election
makes one act; /readyz answers only on the leader, so the operator's Service
sends requests to it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runOperator(cmd.Context(), o) },
	}
	f := cmd.Flags()
	addKubeFlags(f, &o.kube)
	f.StringVar(&o.addr, "addr", ":8090", "address for the demand API, /healthz, /readyz and /metrics (see --metrics-auth)")
	connlimit.AddFlags(f, &o.limits)
	o.tls.AddFlags(f)
	f.BoolVar(&o.leaderElect, "leader-elect", true, "elect a leader among operator replicas (a Lease in the namespace); only the leader acts")
	f.StringVar(&o.leaderID, "leader-election-id", "ebb-operator", "name of the leader election Lease")
	f.DurationVar(&o.leaseDuration, "lease-duration", 15*time.Second, "leader election: how long a lease holds without renewal")
	f.DurationVar(&o.renewDeadline, "renew-deadline", 10*time.Second, "leader election: how long the leader retries renewing before giving up")
	f.DurationVar(&o.retryPeriod, "retry-period", 2*time.Second, "leader election: how often candidates try to acquire the lease")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "how long a stopping replica may finish its in-flight requests")
	f.IntVar(&o.workers, "workers", 4, "concurrent reconciles")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	addReplicaPodFlags(f, &o.replicaOptions)
	f.StringVar(&o.storeDSN, "store-dsn", "", "PostgreSQL URL of the registry store (for several operator replicas); default $EBB_STORE_DSN, else SQLite in --data-dir (one operator, on a persistent volume)")
	f.StringVar(&o.dataDir, "data-dir", "/var/lib/ebb", "directory of the SQLite registry store when no --store-dsn is given")
	f.DurationVar(&o.followAliases, "follow-aliases-every", 10*time.Second, "how often the leader re-resolves deployments that follow an alias, so that alias moves made through a standby roll them too")
	o.registry.AddFlags(f)
	o.jobs.AddFlags(f, true)
	o.tracing.AddFlags(f)
	addOperatorAuthFlags(f, &o.auth)
	f.StringVar(&o.warmPoolClass, "warm-pool-priority-class", "", "PriorityClass of warm-pool placeholder pods (spec.coldStart.warmPool): negative value, preemptionPolicy Never; the Helm chart creates one. Empty: no warm pools (the operator has no cluster-wide rights to create the class)")
	return cmd
}

func runOperator(ctx context.Context, o operatorOptions) error {
	if err := checkMetricsAuth(o.auth.metrics); err != nil {
		return err
	}
	if err := server.CheckMaxBodyBytes(o.replicaOptions.maxBodyBytes); err != nil {
		return err
	}
	ctx, stop, log, cfg, ns, err := start(ctx, o.logLevel, o.kube)
	if err != nil {
		return err
	}
	defer stop()
	tr, err := home.StartTracing(ctx, o.tracing, "ebb-operator", log)
	if err != nil {
		return err
	}
	defer tr.Stop()
	o.replicaOptions.tracingArgs = tr.ReplicaArgs(false) // a pod has not the operator's CA file
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
	st, err := home.OpenStore(ctx, o.storeDSN, o.dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	oa, err := newOperatorAuth(ctx, o.auth, o.addr, cfg, ns, st, log)
	if err != nil {
		return err
	}
	var op *operator.Operator
	models, err := home.NewRegistry(o.registry, o.dataDir, st, reg, log, func(model string) {
		if op != nil {
			op.Controller().NotifyModel(model)
		}
	})
	if err != nil {
		return err
	}
	op, err = operator.New(mgr, backend, handle, operator.Options{
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
			Resolver:     models.Resolver,
			ColdStarts:   tr.ColdStarts,
		},
		Auth: oa.gateways(),
	})
	if err != nil {
		return err
	}
	if err := op.FollowAliases(o.followAliases); err != nil {
		return err
	}
	if err := op.RunOnLeader(func(ctx context.Context) {
		models.Service.RunRetirement(ctx, o.registry.RetireEvery, home.RetireUsage(op.Controller().InUse, op.APIStore()), o.registry.Retire)
	}); err != nil {
		return err
	}

	// Rollouts change ModelDeployments and are judged by what every
	// gateway pod reported (op.Meters, and op.Shadows for shadows); only
	// the leader runs them. Their state shows as the Rollout condition of
	// each ModelDeployment (op.RolloutState).
	rollouts := home.NewRollouts(home.RolloutParts{Store: st, Deployments: op.APIStore(), Meters: op.Meters(), Shadows: op.Shadows(),
		Models: models.Service, Event: op.Controller().RecordEvent, State: op.RolloutState}, log)
	if err := op.RunOnLeader(func(ctx context.Context) { _ = rollouts.Run(ctx) }); err != nil {
		return err
	}

	// Batch jobs run on the leader; their chunks reach the gateways
	// through the async queue they drain (--jobs-queue).
	jobsFw, closeJobs, err := o.jobs.Forwarder(ctx, st, o.storeDSN)
	if err != nil {
		return err
	}
	defer closeJobs()
	jobsMgr := home.NewJobs(home.JobParts{Store: st, Deployments: op.APIStore(), Ctl: op.APIController(), Forwarder: jobsFw, Registerer: reg}, o.jobs.Options(), log)
	if err := op.RunOnLeader(func(ctx context.Context) { _ = jobsMgr.Run(ctx) }); err != nil {
		return err
	}

	// Drift: the gateways count what their prediction logs sample and
	// ship it to the leader, which merges it (home/drift.go).
	driftHub := home.NewOperatorDrift(op.CachedDeployments(), models.Service, reg, log)
	if err := op.RunOnLeader(func(ctx context.Context) { _ = driftHub.Run(ctx) }); err != nil {
		return err
	}

	mux := http.NewServeMux()
	// Request statistics (the dashboard's charts): the gateways send
	// their request counters with their demand reports; the leader sums
	// them (operator/requests.go) and samples the sums. A new leader
	// starts a fresh series.
	reqStats := reqstats.New(op.Demand().Requests(), reqstats.Options{})
	if err := op.RunOnLeader(func(ctx context.Context) { _ = reqStats.Run(ctx) }); err != nil {
		return err
	}

	admin := home.NewAdminAPI(oa.parts(home.AdminParts{Store: op.APIStore(), Ctl: op.APIController(), Models: models.Service, Stats: reqStats,
		Events: op, Logs: op.Controller(), Costs: op.Controller(), Home: api.HomeCluster, Version: version, Rollouts: rollouts,
		// Route objects are ModelRoutes, which the gateways watch; tenant
		// limits are in the SQL store, and the gateways poll them.
		Routes: operator.NewRouteStore(mgr.GetAPIReader(), mgr.GetClient(), ns), Pools: op.PoolStore(), Limits: st, Jobs: jobsMgr, Drift: driftHub.Hub, Labels: driftHub.Hub}), log)
	// ModelJobs and the jobs of the store are one set (operator/jobsync.go):
	// the leader submits kubectl's through the API's checks, and shows
	// the API's as ModelJobs.
	jobSync, err := operator.NewJobSync(operator.JobSyncParts{Reader: mgr.GetAPIReader(), Client: mgr.GetClient(), Namespace: ns, Store: st,
		Check: func(ctx context.Context, j *serving.Job, now time.Time) error {
			return admin.CheckJob(ctx, j, jobsMgr.Admission(), now)
		}, Submitted: jobsMgr.Submitted}, operator.JobSyncOptions{Logger: log})
	if err != nil {
		return err
	}
	if err := op.RunOnLeader(func(ctx context.Context) { _ = jobSync.Run(ctx) }); err != nil {
		return err
	}
	mux.Handle("/v1/", oa.admin(admin))
	mux.Handle("/ui", ui.Handler()) // the dashboard, beside the admin API it reads
	mux.Handle("/ui/", ui.Handler())
	// The gateways read the tenant limits with their own token.
	var limits http.Handler = admin.LimitList(st)
	if ga := oa.gateways(); ga.Authenticator != nil {
		limits = auth.Require(ga.Authenticator, auth.Gateway, limits)
	}
	mux.Handle("GET "+operator.LimitsPath, limits)
	driftAPI := driftHub.Handler(oa.gateways().Authenticator)
	mux.Handle(drift.ProfilesPath, driftAPI)
	mux.Handle(drift.WindowsPath, driftAPI)
	metrics, err := oa.metrics(o.auth.metrics, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}), log)
	if err != nil {
		return err
	}
	mux.Handle("GET /metrics", metrics)
	mux.Handle("/", op.Handler())
	stls, err := o.tls.Server(log)
	if err != nil {
		return err
	}
	go stls.Run(ctx)
	go oa.run(ctx)
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w (pick another address with --addr)", o.addr, err)
	}
	srv := o.limits.Server(mux)
	ln = stls.HTTPListener(o.limits.Listener(ln))
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

// start is how both commands begin: their logger, a context that SIGINT
// and SIGTERM end (stop releases it), and the cluster and namespace.
func start(ctx context.Context, logLevel string, kube kubeOptions) (context.Context, context.CancelFunc, *slog.Logger, *rest.Config, string, error) {
	log, err := logging.New(logLevel)
	if err != nil {
		return nil, nil, nil, nil, "", err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, ns, err := kube.load()
	if err != nil {
		return nil, nil, nil, nil, "", err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	return ctx, stop, log, cfg, ns, nil
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
	// Where replica pods fetch registry artifacts to.
	artifactCache     string // hostPath, emptyDir or none
	artifactCachePath string // the hostPath
	envSecret         string // Secret whose keys become replica env (S3 credentials)
	artifactClaim     string // a claim holding a file:// artifact store, mounted read-only
	tlsSecret         string // kubernetes.io/tls Secret: replicas serve mutual TLS
	// maxBodyBytes and maxRequestElements are passed to every replica
	// (--max-body-bytes, --max-request-elements).
	maxBodyBytes       int64
	maxRequestElements int64
	// tracingArgs are the operator's own tracing flags, for every replica.
	tracingArgs []string
}

// artifactStorePath is where a volume artifact store is mounted, in the
// operator and in replica pods alike, so file:// artifact URIs mean the
// same file in both.
const artifactStorePath = "/var/lib/ebb/artifacts"

// artifactVolume returns the volume and mount of a claim-backed artifact
// store, or nothing.
func (o replicaPodOptions) artifactVolume() ([]corev1.Volume, []corev1.VolumeMount) {
	if o.artifactClaim == "" {
		return nil, nil
	}
	return []corev1.Volume{{Name: "artifacts", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: o.artifactClaim, ReadOnly: true}}}},
		[]corev1.VolumeMount{{Name: "artifacts", MountPath: artifactStorePath, ReadOnly: true}}
}

// artifactCacheVolume returns the volume replica pods cache artifacts in.
func (o replicaPodOptions) artifactCacheVolume() (*corev1.VolumeSource, error) {
	switch o.artifactCache {
	case "hostPath":
		if !filepath.IsAbs(o.artifactCachePath) {
			return nil, fmt.Errorf("--replica-artifact-cache-path %q must be an absolute path on the nodes", o.artifactCachePath)
		}
		return &corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: o.artifactCachePath, Type: ptrTo(corev1.HostPathDirectoryOrCreate)}}, nil
	case "emptyDir":
		return &corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}, nil
	case "none":
		return nil, nil
	}
	return nil, fmt.Errorf("unknown --replica-artifact-cache %q: use hostPath (one cache per node, shared by its replica pods), emptyDir (one per pod) or none", o.artifactCache)
}

// replicaEnv is what replica pods need to read the artifact store: the S3
// settings the operator itself runs with (not the credentials), and the
// credentials from the Secret --replica-env-from-secret names.
func (o replicaPodOptions) replicaEnv() ([]corev1.EnvVar, []corev1.EnvFromSource) {
	var env []corev1.EnvVar
	for _, k := range []string{"EBB_S3_ENDPOINT", "AWS_REGION"} {
		if v := os.Getenv(k); v != "" {
			env = append(env, corev1.EnvVar{Name: k, Value: v})
		}
	}
	var from []corev1.EnvFromSource
	if o.envSecret != "" {
		from = append(from, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: o.envSecret}}})
	}
	return env, from
}

func addReplicaPodFlags(f *pflag.FlagSet, o *replicaPodOptions) {
	f.StringVar(&o.artifactCache, "replica-artifact-cache", "hostPath", "where replica pods cache registry artifacts: hostPath (one cache per node, shared by its replica pods), emptyDir (one per pod) or none")
	f.StringVar(&o.artifactCachePath, "replica-artifact-cache-path", "/var/cache/ebb/artifact-cache", "with --replica-artifact-cache=hostPath: the directory on each node (writable by the replica's user, 65532 in ebb's image)")
	f.StringVar(&o.artifactClaim, "replica-artifact-volume-claim", "", "PersistentVolumeClaim (ReadWriteMany) holding a file:// artifact store at "+artifactStorePath+": replica pods mount it read-only there")
	f.StringVar(&o.envSecret, "replica-env-from-secret", "", "Secret whose keys become environment variables of every replica pod: the artifact store's credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
	f.Int64Var(&o.maxBodyBytes, "max-body-bytes", server.DefaultMaxRequestBytes, "most bytes of one infer request body (413) or gRPC request message (ResourceExhausted) replica pods accept; give the gateways the same --max-body-bytes")
	f.Int64Var(&o.maxRequestElements, "max-request-elements", server.DefaultMaxRequestElements, "most tensor elements one infer request may declare, all inputs together; replica pods answer more with 413")
	f.StringVar(&o.image, "replica-image", kube.DefaultImage, "image of replica pods (a ModelDeployment's spec.template.image overrides it)")
	f.StringVar(&o.pullPolicy, "replica-image-pull-policy", "", "image pull policy of replica pods: Always, IfNotPresent or Never; default Kubernetes'")
	f.StringVar(&o.tlsSecret, "replica-tls-secret", "", "Secret (kubernetes.io/tls) that makes replica pods serve mutual TLS: tls.crt/tls.key are their certificate (valid for the gateways' --replica-tls-server-name), ca.crt the CA of the gateways' client certificates; mounted at "+operator.ReplicaTLSPath+" and reread when it changes. Gateways then need --replica-tls-cert. Replicas started before keep serving plain HTTP until replaced")
}

// replicaArgs are the limits every replica pod gets on its command line.
func (o replicaPodOptions) replicaArgs() []string {
	return append([]string{
		"--max-body-bytes", strconv.FormatInt(o.maxBodyBytes, 10),
		"--max-request-elements", strconv.FormatInt(o.maxRequestElements, 10),
	}, o.tracingArgs...)
}

// newPodBackend returns the pod backend, its pods customized by their
// ModelDeployments, and the function that rebuilds handles from its pods.
func newPodBackend(mgr manager.Manager, ns string, o replicaPodOptions, log *slog.Logger) (*kube.Backend, operator.PodHandle, error) {
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return nil, nil, fmt.Errorf("operator: kubernetes client: %w", err)
	}
	pods := operator.NewPodCustomizer(mgr.GetCache(), mgr.GetScheme(), ns)
	cacheVol, err := o.artifactCacheVolume()
	if err != nil {
		return nil, nil, err
	}
	env, envFrom := o.replicaEnv()
	vols, mounts := o.artifactVolume()
	replicaTLS := operator.ReplicaTLS{SecretName: o.tlsSecret}
	b, err := kube.New(kube.Options{
		Client:          cs,
		Namespace:       ns,
		Image:           o.image,
		ImagePullPolicy: corev1.PullPolicy(o.pullPolicy),
		ArtifactCache:   cacheVol,
		Env:             env,
		EnvFrom:         envFrom,
		Volumes:         vols,
		VolumeMounts:    mounts,
		ReplicaArgs:     o.replicaArgs(),
		Template: func(_ replica.Spec, pod *corev1.Pod) {
			if err := pods.Customize(context.Background(), pod); err != nil {
				log.Warn("replica pod without its ModelDeployment's overrides", "pod", pod.Name, "err", err)
			}
			replicaTLS.Apply(pod)
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return b, operator.KubeHandle, nil
}
