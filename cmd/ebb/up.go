package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/ebb-ml/ebb/examples/diabetes"
	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/certs"
	"github.com/ebb-ml/ebb/internal/control"
	"github.com/ebb-ml/ebb/internal/drain"
	"github.com/ebb-ml/ebb/internal/fairqueue"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/home"
	"github.com/ebb-ml/ebb/internal/limit"
	"github.com/ebb-ml/ebb/internal/logging"
	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/replica/process"
	"github.com/ebb-ml/ebb/internal/reqstats"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"github.com/ebb-ml/ebb/internal/ui"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
)

type upOptions struct {
	addr         string
	adminAddr    string // admin API's own address; empty: on addr
	dataDir      string
	demo         bool
	holdTimeout  time.Duration
	maxQueue     int
	maxQueueTen  int // --max-queue-per-tenant
	async        home.AsyncFlags
	jobs         home.JobsFlags          // --jobs-concurrency
	tracing      telemetry.Config        // --otlp-*, --trace-sample-ratio (home/tracing.go)
	predictions  home.PredictionLogFlags // --prediction-log-* (up_predlog.go)
	drainTimeout time.Duration
	logLevel     string
	storeDSN     string // PostgreSQL store; empty: SQLite in dataDir
	grpcAddr     string // OIP v2 gRPC gateway; empty: off
	grpcAddrSet  bool   // --grpc-addr given: failing to listen on it is fatal

	authMode     string   // --auth: on or off
	infAuth      string   // --inference-auth: auto or on
	allowedHosts []string // --allowed-hosts: more Host names the admin API answers

	registry       home.RegistryOptions
	upLogOptions                  // up_logs.go
	upLimits                      // limits.go
	oidc           auth.OIDCFlags // --oidc-*
	tls            certs.Files    // --tls-*
	replicaSecrets bool           // --replica-secrets
	replicaSockets bool           // --replica-sockets
	replicaBatch   bool           // --replica-sched-batch
	replicaBinary  string         // --replica-binary (up_replica.go)
	onnxruntimeLib string         // --onnxruntime-lib (up_replica.go)
	// exitWithParent: stop when the process that started ebb up ends
	// (up_parent.go); on by default under go run.
	exitWithParent bool
}

func newUpCmd() *cobra.Command {
	o := upOptions{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run ebb on this machine: control plane, gateway and admin API in one process",
		Long: `Run ebb on this machine with an embedded SQLite store, or with a shared
PostgreSQL store given by --store-dsn or $EBB_STORE_DSN. Replicas run as
local processes on loopback ports. Deployments and their replicas survive a
restart: ebb reattaches to replicas that still run and restarts the rest.

With --demo, ebb deploys the bundled diabetes XGBoost model and prints a
request to try.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.grpcAddrSet = cmd.Flags().Changed("grpc-addr")
			return runUp(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address for the gateway, admin API (/v1) and metrics (/metrics)")
	f.StringVar(&o.adminAddr, "admin-addr", "", "address for the admin API (/v1) alone, apart from inference on --addr (which then answers /v1 with 404); default: the admin API is on --addr")
	f.StringVar(&o.grpcAddr, "grpc-addr", "127.0.0.1:8081", `address for the OIP v2 gRPC API (KServe/Triton GRPCInferenceService); "" disables it`)
	f.StringVar(&o.dataDir, "data-dir", ".ebb", "directory for the store, replica logs and demo files")
	f.StringVar(&o.storeDSN, "store-dsn", "", "PostgreSQL URL (postgres://user:password@host:5432/db) of a shared store to use instead of SQLite in --data-dir; default $EBB_STORE_DSN")
	f.BoolVar(&o.demo, "demo", false, "deploy the bundled diabetes example and print a request to try")
	f.DurationVar(&o.holdTimeout, "hold-timeout", 60*time.Second, "longest a request is held while its deployment has no ready replica")
	f.IntVar(&o.maxQueue, "max-queue", 10000, "most requests held per cold deployment, and waiting per deployment at its spec.scaling.maxConcurrency; more get 503 with Retry-After")
	o.async.AddFlags(f, "ebb's own store (SQLite in --data-dir, or PostgreSQL with --store-dsn)")
	o.jobs.AddFlags(f, false)
	o.tracing.AddFlags(f)
	o.predictions.AddFlags(f, "default DATA-DIR/predictions")
	f.IntVar(&o.maxQueueTen, "max-queue-per-tenant", fairqueue.DefaultMaxQueuePerTenant, "most requests of one tenant held per cold deployment, and waiting per capped deployment; more get 429 with Retry-After")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "how long in-flight requests may take to finish on shutdown or scale-down")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&o.authMode, "auth", "on", "on: the admin API needs a token (DATA-DIR/admin.token is one), and inference and /metrics do too unless their address is loopback; off: no tokens anywhere (only behind a proxy that authenticates)")
	f.StringVar(&o.infAuth, "inference-auth", "auto", "auto: inference needs a token with predict:NAME unless its address is loopback; on: on loopback too (a machine shared with users who must not call every model); ignored with --auth=off")
	f.StringSliceVar(&o.allowedHosts, "allowed-hosts", nil, "more Host names (host or host:port) the admin API answers besides its listen address, such as the name a proxy forwards; browsers' Origin must be one of these or the Host itself")
	o.registry.AddFlags(f)
	addUpLogFlags(f, &o.upLogOptions)
	addUpLimitFlags(f, &o.upLimits)
	o.oidc.AddFlags(f)
	o.tls.AddFlags(f)
	addReplicaBinaryFlag(f, &o.replicaBinary)
	addONNXRuntimeFlag(f, &o.onnxruntimeLib)
	addExitWithParentFlag(f, &o.exitWithParent)
	f.BoolVar(&o.replicaSockets, "replica-sockets", runtime.GOOS == "linux", "replicas serve REST on a Unix socket too, which the gateway uses instead of their loopback port: cheaper per request (abstract sockets on Linux, else files in DATA-DIR/sockets); false: loopback TCP only")
	f.BoolVar(&o.replicaBatch, "replica-sched-batch", runtime.GOOS == "linux", "replicas run under Linux's SCHED_BATCH policy: one woken by a request does not preempt the gateway, which keeps forwarding what it has, so both run longer turns (about 10-20% more requests per second through the gateway on shared CPUs); the gateway still preempts a busy replica; false: the default policy")
	f.BoolVar(&o.replicaSecrets, "replica-secrets", true, "replicas serve only requests that carry a per-replica secret the gateway adds (health checks excepted); false lets any user of this machine call replica ports directly (benchmarks only)")
	return cmd
}

func runUp(ctx context.Context, o upOptions) error {
	log, err := logging.New(o.logLevel)
	if err != nil {
		return err
	}
	if err := o.upLimits.check(); err != nil {
		return err
	}
	tr, err := home.StartTracing(ctx, o.tracing, "ebb", log) // spans of the gateway, activator and control loop
	if err != nil {
		return err
	}
	defer tr.Stop()
	onnxEnv, err := onnxRuntimeEnv(o.onnxruntimeLib)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, stopSignals()...)
	defer stop()
	if o.exitWithParent {
		var cancel context.CancelFunc
		ctx, cancel = withParent(ctx, log)
		defer cancel()
	}

	st, err := home.OpenStore(ctx, o.storeDSN, o.dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	ua, err := newUpAuth(ctx, o, st, log)
	if err != nil {
		return err
	}
	stls, err := o.tls.Server(log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	// The request metrics alone as well, which reqStats reads every few
	// seconds: the whole registry has series for every deployment.
	reqReg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	routes := &routing.Table{QueueOptions: fairqueue.Options{MaxQueue: o.maxQueue, MaxQueuePerTenant: o.maxQueueTen, Timeout: o.holdTimeout}}
	var ctl *control.Controller
	models, err := home.NewRegistry(o.registry, o.dataDir, st, reg, log, func(model string) { ctl.NotifyModel(model) })
	if err != nil {
		return err
	}
	replicaCmd, err := replicaCommand(o.replicaBinary, log)
	if err != nil {
		return err
	}
	// Replicas fetch registry artifacts themselves, through the host cache.
	backend, err := process.New(process.Options{
		Command:      replicaCmd,
		LogDir:       filepath.Join(o.dataDir, "logs"),
		LogMaxBytes:  o.logMaxBytes,
		LogKeep:      o.logKeep,
		LogRetention: o.logRetention,
		NoSecrets:    !o.replicaSecrets,
		Sockets:      o.replicaSockets,
		SocketDir:    filepath.Join(o.dataDir, "sockets"),
		ReplicaArgs:  append(append(o.upLimits.replicaArgs(), tr.ReplicaArgs(true)...), batchArgs(o.replicaBatch)...),
		Env: append([]string{
			artifactCacheEnv + "=" + models.CacheDir,
			artifactCacheMaxEnv + "=" + strconv.FormatInt(models.CacheMaxBytes, 10),
		}, onnxEnv...),
	})
	if err != nil {
		return err
	}
	ctl = control.New(st, backend, routes, control.Options{
		Logger:       log,
		Metrics:      control.NewMetrics(reg),
		DrainTimeout: o.drainTimeout,
		Resolver:     models.Resolver,

		MaxReplicasTotal: o.maxReplicasTotal,
		ColdStarts:       tr.ColdStarts,
	})
	reg.MustRegister(gateway.NewQueueCollector(routes)) // the fair queues of capped deployments
	// The loops that read every deployment every few seconds list them
	// again only when they changed (home/deployments.go).
	cachedDeps := &home.CachedDeployments{Store: st}
	driftMon := home.NewUpDrift(cachedDeps, models.Service, reg, log)             // counts the logged predictions (home/drift.go)
	preds, err := openUpPredictions(o, st, cachedDeps, reg, log, driftMon.Sink()) // up_predlog.go
	if err != nil {
		return err
	}
	defer preds.stop()
	act := activator.New(routes, ctl, activator.Options{Timeout: o.holdTimeout, MaxQueue: o.maxQueue, MaxQueuePerTenant: o.maxQueueTen, Registerer: reg,
		Tracer: tr.Tracer, ColdStarts: tr.ColdStarts})
	shards := newUpShards(st, log) // route objects (up_routes.go)
	// Tenant limits, from the store (home/async.go); a change through the
	// API applies at once, and the poll catches the rest.
	limiter, limits := home.NewLimiter(home.StoreLimits{Store: st}, limit.NewMetrics(reg, 0), nil, log)
	routes.QueueOptions.Weight = func(tenant string) int { return int(limiter.Weight(tenant, "")) }
	aq, closeAsync, err := o.async.Open(ctx, st, o.registry.Artifacts, o.dataDir)
	if err != nil {
		return err
	}
	defer closeAsync()
	secret, err := o.async.Secret(o.dataDir)
	if err != nil {
		return err
	}
	var worker *queue.Worker    // runs async requests through gw (below)
	waiters := &queue.Waiters{} // the results it stores wake GETs waiting for them
	gwOpts := gateway.Options{
		Limiter: limiter,
		Async: &gateway.Async{Queue: aq, Waiters: waiters, Wake: func(dep string) { worker.Enqueued(dep) }, CallbackHosts: o.async.CallbackHosts,
			MaxBodyBytes: o.async.MaxBodyBytes},
		Shards:           shards.table,
		HoldTimeout:      o.holdTimeout,
		MaxBodyBytes:     o.maxBodyBytes,
		MaxBufferedBytes: o.maxBufferedBytes,
		Budget:           &gateway.BodyBudget{}, // shared by REST and gRPC
		Limits:           o.limits,
		Logger:           log,
		Metrics:          gateway.NewMetrics(reqstats.Tee{A: reg, B: reqReg}),
		Version:          version,
		Tracer:           tr.Tracer,
		Predictions:      preds.gateway(),
		Ready: func() bool {
			select {
			case <-ctl.Loaded():
				return ctx.Err() == nil
			default:
				return false
			}
		},
	}
	grpcOpts := gwOpts
	grpcOpts.TLS = stls.GRPCConfig()
	gwOpts.Auth, grpcOpts.Auth = ua.inference(o.addr), ua.inference(o.grpcAddr)
	switch o.infAuth {
	case "auto", "":
	case "on":
		if !ua.off {
			gwOpts.Auth, grpcOpts.Auth = ua.authn, ua.authn
			log.Info("auth: inference needs a token with predict:NAME on every address (--inference-auth=on)")
		}
	default:
		return fmt.Errorf("invalid --inference-auth %q: use auto (the default) or on", o.infAuth)
	}
	gw := gateway.New(routes, act, gwOpts)
	// Async requests run through the gateway's chain, in process.
	worker = queue.NewWorker(aq, gw, queue.WorkerOptions{Lease: o.async.Lease, Concurrency: home.AsyncPace(routes), Logger: log, Waiters: waiters,
		Callbacks: queue.CallbackOptions{Secret: secret, AllowedHosts: o.async.CallbackHosts}})
	// Batch jobs: their chunks run through gw in process (home/jobs.go).
	jobsMgr := home.NewJobs(home.JobParts{Store: st, Deployments: st, Ctl: ctl, Forwarder: gw, Registerer: reg}, o.jobs.Options(), log)
	// The front server serves the gateway's routes itself (OIP v2 and the
	// OpenAI API, /v1/chat/completions and the like included) and the rest
	// here: the admin API and /metrics.
	mux := http.NewServeMux()
	rollouts := home.NewRollouts(home.RolloutParts{Store: st, Deployments: st, Meters: routes, Shadows: routes, Models: models.Service,
		Event: ctl.RecordEvent, Notify: ctl.Notify}, log)
	// Recent request rate, errors and latency per deployment, sampled
	// from the gateway's metrics for the dashboard (/v1/.../stats).
	reqStats := reqstats.New(reqstats.Gathered{Gatherer: reqReg}, reqstats.Options{})
	admin := home.NewAdminAPI(home.AdminParts{Store: st, Ctl: preds.controller(ctl), Models: models.Service, Events: ctl, Logs: ctl, Costs: ctl, Home: api.HomeUp,
		Version: version, Tokens: st, OnRevoke: ua.verifier.Forget, Rollouts: rollouts, Routes: st, RoutesChanged: shards.changed,
		Limits: st, LimitsChanged: func(ctx context.Context) { _ = limits.Poll(ctx) }, Jobs: jobsMgr, Stats: reqStats, Drift: driftMon.Monitor, Labels: driftMon.Labels}, log)
	admin.ConfineModelPaths(o.modelPaths(o.dataDir))
	var adm *adminServer
	if o.adminAddr != "" {
		if adm, err = listenAdmin(o, ua.admin(admin), stls, gw.Listener); err != nil {
			return err
		}
		defer adm.ln.Close()
		mux.Handle("/v1/", adminElsewhere())
	} else {
		mux.Handle("/v1/", ua.admin(admin))
		mux.Handle("/ui", ui.Handler()) // the dashboard, beside the admin API it reads
		mux.Handle("/ui/", ui.Handler())
	}
	mux.Handle("GET /metrics", ua.metrics(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w (is another ebb running? pick another address with --addr)", o.addr, err)
	}
	if adm != nil {
		ua.listening(adm.addr())
	} else {
		ua.listening(ln.Addr().String())
	}
	srv := gateway.NewServer(gw, mux) // keep-alive connections close gracefully on SIGTERM
	ln = stls.HTTPListener(gw.Listener(ln))
	var grpcLn net.Listener
	if o.grpcAddr != "" {
		if grpcLn, err = net.Listen("tcp", o.grpcAddr); err != nil && o.grpcAddrSet {
			ln.Close()
			return fmt.Errorf("cannot listen on %s for gRPC: %w (pick another address with --grpc-addr, or disable gRPC with --grpc-addr '')", o.grpcAddr, err)
		} else if err != nil {
			// The default port is taken (say, by another ebb up): run
			// without gRPC rather than fail.
			log.Warn("gRPC gateway off: the default --grpc-addr is in use; give --grpc-addr to choose another", "addr", o.grpcAddr, "err", err)
		}
	}

	ctlCtx, stopCtl := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCtl()
	ctlDone := make(chan error, 1)
	go func() { ctlDone <- ctl.Run(ctlCtx) }()
	go models.Service.RunRetirement(ctlCtx, o.registry.RetireEvery, home.RetireUsage(ctl.InUse, st), o.registry.Retire)
	go rollouts.Run(ctlCtx)
	go shards.run(ctlCtx)
	go limits.Run(ctlCtx)
	go func() {
		// Not before the control loop has loaded the deployments: a
		// request the queue kept over a restart would find its
		// deployment unknown (404, a final result) in an empty table.
		select {
		case <-ctl.Loaded():
			_ = worker.Run(ctlCtx)
		case <-ctlCtx.Done():
		}
	}()
	go driftMon.Run(ctlCtx)
	go reqStats.Run(ctlCtx)
	go stls.Run(ctlCtx)
	preds.start(ctlCtx)
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ln) }()
	adminBase := stls.Scheme() + "://" + ln.Addr().String()
	if adm != nil {
		go adm.serve()
		adminBase = stls.Scheme() + "://" + adm.addr()
		log.Info("admin API listening", "addr", adminBase)
	}
	// The gRPC gateway drains by itself when ctx ends (SIGTERM).
	grpcDone := make(chan error, 1)
	if grpcLn != nil {
		log.Info("gRPC gateway listening", "addr", grpcLn.Addr().String())
		go func() { grpcDone <- gateway.NewGRPC(routes, act, grpcOpts).Serve(ctx, grpcLn, o.drainTimeout) }()
	} else {
		grpcDone <- nil
	}

	select {
	case <-ctl.Loaded():
	case err := <-ctlDone:
		srv.Close()
		return err
	}
	// After Loaded: the replicas to recover are known and their logs kept.
	go maintainReplicaLogs(ctlCtx, backend, log)
	go jobsMgr.Run(ctlCtx) // resumes the jobs a stop left running
	base := stls.Scheme() + "://" + ln.Addr().String()
	log.Info("ebb is up", "addr", base, "dashboard", adminBase+ui.Prefix, "dataDir", o.dataDir, "version", version)
	if o.demo {
		if err := deployDemo(ctx, st, ctl, o.dataDir, base, adminBase, ua); err != nil {
			log.Error("demo deployment failed", "err", err)
		}
	}

	var admDone chan error // nil without --admin-addr: never ready
	if adm != nil {
		admDone = adm.done
	}
	select {
	case <-ctx.Done():
	case err := <-srvDone:
		stopCtl()
		<-ctlDone
		return fmt.Errorf("gateway stopped: %w", err)
	case err := <-admDone:
		stopCtl()
		<-ctlDone
		return fmt.Errorf("admin API stopped: %w", err)
	}
	log.Info("shutting down: draining in-flight requests", "timeout", o.drainTimeout.String())
	drainCtx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
	defer cancel()
	if err := srv.Shutdown(drainCtx, drain.KeepAliveGrace); err != nil {
		log.Warn("gateway drain incomplete", "err", err)
	}
	if adm != nil {
		if err := adm.shutdown(drainCtx); err != nil {
			log.Warn("admin API drain incomplete", "err", err)
		}
	}
	if err := <-grpcDone; err != nil {
		log.Warn("gRPC gateway drain incomplete", "err", err)
	}
	preds.stop() // after the drain: the requests it finished are logged
	stopCtl()
	err = <-ctlDone
	ctl.Wait()
	log.Info("ebb stopped")
	return err
}

// demoStore is what the demo needs to create its deployment.
type demoStore interface {
	CreateDeployment(ctx context.Context, d serving.Deployment) (serving.Deployment, error)
}

// deployDemo writes the bundled diabetes model into the data dir, deploys it
// unless a deployment of that name exists, and prints a request to try.
func deployDemo(ctx context.Context, st demoStore, ctl *control.Controller, dataDir, base, adminBase string, ua *upAuth) error {
	dir, err := filepath.Abs(filepath.Join(dataDir, "demo"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	model := filepath.Join(dir, "diabetes.json")
	req := filepath.Join(dir, "request.json")
	if err := os.WriteFile(model, diabetes.Model, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(req, diabetes.Request, 0o644); err != nil {
		return err
	}
	d := serving.Deployment{Name: "diabetes", Spec: serving.Spec{
		Model:   model,
		Engine:  "trees",
		Scaling: serving.Scaling{MinReplicas: 0, MaxReplicas: 4, ScaleToZeroAfter: serving.D(30 * time.Second)},
	}}
	d.Spec.Default()
	if err := d.Validate(); err != nil {
		return err
	}
	if _, err := st.CreateDeployment(ctx, d); err != nil && !errors.Is(err, store.ErrExists) {
		return err
	}
	ctl.Notify(d.Name)
	curlAuth, cliEnv := ua.demoHints(dataDir)
	// The command a reader types: the one that started this ebb.
	cli := "ebb"
	if exe, err := os.Executable(); err == nil && underGoRun(exe) {
		cli = "go run ./cmd/ebb"
	}
	fmt.Printf(`
ebb is serving the demo deployment "diabetes" (XGBoost, scaled to zero until the first request).
Try it:

  curl -s -X POST %s/v2/models/diabetes/infer -H 'Content-Type: application/json'%s -d @%s

  %s%s get deployments diabetes --server %s    # replicas, cold-start phases
  curl -s%s %s/metrics | grep ebb_    # Prometheus metrics

Press Ctrl-C to stop; replicas are drained and stopped.

`, base, curlAuth, req, cliEnv, cli, adminBase, curlAuth, base)
	return nil
}

// batchArgs are the replica flags of --replica-sched-batch.
func batchArgs(on bool) []string {
	if on {
		return []string{"--sched-batch"}
	}
	return nil
}
