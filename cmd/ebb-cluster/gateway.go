package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/certs"
	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/ebb-ml/ebb/internal/discovery"
	"github.com/ebb-ml/ebb/internal/drain"
	"github.com/ebb-ml/ebb/internal/fairqueue"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/home"
	"github.com/ebb-ml/ebb/internal/limit"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/reqstats"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

type gatewayOptions struct {
	kube         kubeOptions
	addr         string
	grpcAddr     string
	operatorURL  string
	adminProxy   bool
	name         string
	holdTimeout  time.Duration
	maxQueue     int
	maxQueueTen  int // --max-queue-per-tenant
	async        home.AsyncFlags
	drainTimeout time.Duration
	reportEvery  time.Duration
	logLevel     string
	// endpointsFrom is where replicas are found: endpointslices or pods.
	endpointsFrom string

	limits           connlimit.Limits
	maxBodyBytes     int64
	maxBufferedBytes int64

	tls         certs.Files
	operatorCA  string // CA of the operator's certificate (https --operator-url)
	replicaTLS  replicaClientTLS
	authMode    string         // --auth: on or off
	metricsAuth string         // --metrics-auth: token or open (gateway_metrics.go)
	tokenFile   string         // the gateway's own token, reread on change (gateway_auth.go)
	oidc        auth.OIDCFlags // the same flags as ebb up's

	tracing telemetry.Config // --otlp-*, --trace-sample-ratio (home/tracing.go)

	predictions home.PredictionLogFlags // --prediction-log-* (gateway_predlog.go)
}

// replicaClientTLS are the gateway's --replica-tls-* flags: with a client
// certificate, replicas are dialled over https (mutual TLS).
type replicaClientTLS struct {
	certFile, keyFile, caFile string
	serverName                string
}

func newGatewayCmd() *cobra.Command {
	o := gatewayOptions{}
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run the in-cluster data plane: OIP v2 for every ModelDeployment of a namespace",
		Long: `Gateway serves the Open Inference Protocol v2 (REST, and gRPC on --grpc-addr)
for every ModelDeployment in its namespace, exactly as ebb up does locally:
requests for a deployment scaled to zero are held while a replica starts.

It finds replicas in the EndpointSlices of each ModelDeployment's Service,
reports its demand to the operator (--operator-url) every second and wakes
cold deployments through it. It keeps no state: run as many as you like.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runGateway(cmd.Context(), o) },
	}
	f := cmd.Flags()
	addKubeFlags(f, &o.kube)
	f.StringVar(&o.addr, "addr", ":8080", "address for OIP v2 REST, /metrics (see --metrics-auth), /healthz and /readyz")
	f.StringVar(&o.grpcAddr, "grpc-addr", ":8081", `address for the OIP v2 gRPC API; "" disables it`)
	f.StringVar(&o.operatorURL, "operator-url", "http://ebb-operator:8090", "base URL of the operator's demand API (its Service)")
	f.StringVar(&o.name, "name", "", "this gateway's name in demand reports; default $POD_NAME, else the host name")
	f.DurationVar(&o.holdTimeout, "hold-timeout", 60*time.Second, "longest a request is held while its deployment has no ready replica")
	f.IntVar(&o.maxQueue, "max-queue", 10000, "most requests held per cold deployment, and waiting per deployment at its spec.scaling.maxConcurrency; more get 503 with Retry-After")
	o.async.AddFlags(f, "async inference is off (Prefer: respond-async is ignored)")
	f.IntVar(&o.maxQueueTen, "max-queue-per-tenant", fairqueue.DefaultMaxQueuePerTenant, "most requests of one tenant held per cold deployment, and waiting per capped deployment; more get 429 with Retry-After")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "how long in-flight requests may take to finish on shutdown")
	f.DurationVar(&o.reportEvery, "report-every", time.Second, "how often demand is reported to the operator")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.BoolVar(&o.adminProxy, "admin-proxy", true, "pass the admin API (/v1/...) through to the operator, so that one address serves inference and the ebb CLI, as ebb up does")
	connlimit.AddFlags(f, &o.limits)
	f.Int64Var(&o.maxBodyBytes, "max-body-bytes", gateway.DefaultMaxBodyBytes, "most bytes of one inference request body (more get 413, decided from Content-Length before reading) or gRPC request message (ResourceExhausted); give the operator the same --max-body-bytes, for its replica pods")
	f.Int64Var(&o.maxBufferedBytes, "max-buffered-bytes", gateway.DefaultMaxBufferedBytes, "most request body bytes held across all requests in flight; beyond it requests get 503 with Retry-After")
	o.tls.AddFlags(f)
	f.StringVar(&o.operatorCA, "operator-ca", "", "PEM file of the CA that signed the operator's certificate, for an https --operator-url (besides the system's CAs); reloaded when the file changes")
	f.StringVar(&o.authMode, "auth", "on", "on: inference (REST and gRPC) needs a token with predict:NAME, verified by the operator (or an OIDC JWT with --oidc-issuer), and the gateway sends its own token (--token-file or $EBB_GATEWAY_TOKEN, scope gateway) with demand reports and wake-ups; off: inference and /metrics are open (only behind a proxy that authenticates, and with the operator's --auth=off)")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the gateway's own token (scope gateway), reread when it changes, so a rotated Secret needs no restart; default $"+gatewayTokenEnv)
	addMetricsAuthFlag(f, &o.metricsAuth)
	o.oidc.AddFlags(f)
	o.tracing.AddFlags(f)
	o.predictions.AddFlags(f, "empty, the default, turns the log off (the chart sets it with gateway.predictionLog.enabled)")
	f.StringVar(&o.replicaTLS.certFile, "replica-tls-cert", "", "PEM client certificate the gateway presents to replicas: with it, replicas are dialled over https (mutual TLS; the operator's --replica-tls-secret); reloaded when the file changes")
	f.StringVar(&o.replicaTLS.keyFile, "replica-tls-key", "", "PEM private key of --replica-tls-cert")
	f.StringVar(&o.replicaTLS.caFile, "replica-tls-ca", "", "PEM file of the CA that signed the replicas' certificate, the only one trusted for them (default: the system's CAs); reloaded when the file changes")
	f.StringVar(&o.replicaTLS.serverName, "replica-tls-server-name", "ebb-replica", "name the replicas' certificate must be valid for (one certificate serves every replica pod, whatever its IP)")
	f.StringVar(&o.endpointsFrom, "endpoints-from", string(discovery.FromEndpointSlices), "where to find ready replicas: endpointslices (of each ModelDeployment's Service) or pods (needs pods list/watch; for clusters whose pod IPs EndpointSlices refuse, e.g. loopback)")
	return cmd
}

func runGateway(ctx context.Context, o gatewayOptions) error {
	if err := checkMetricsAuth(o.metricsAuth); err != nil {
		return err
	}
	if err := server.CheckMaxBodyBytes(o.maxBodyBytes); err != nil {
		return err
	}
	ctx, stop, log, cfg, ns, err := start(ctx, o.logLevel, o.kube)
	if err != nil {
		return err
	}
	defer stop()
	tr, err := home.StartTracing(ctx, o.tracing, "ebb-gateway", log)
	if err != nil {
		return err
	}
	defer tr.Stop()
	name := o.name
	if name == "" {
		name = os.Getenv("POD_NAME")
	}
	if name == "" {
		name, _ = os.Hostname()
	}
	scheme, err := operator.NewScheme()
	if err != nil {
		return err
	}
	source, err := discovery.ParseSource(o.endpointsFrom)
	if err != nil {
		return fmt.Errorf("--endpoints-from: %w", err)
	}
	copts := discovery.CacheOptions(ns, source)
	copts.Scheme = scheme
	c, err := cache.New(cfg, copts)
	if err != nil {
		return fmt.Errorf("gateway: kubernetes cache: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	table := &routing.Table{QueueOptions: fairqueue.Options{MaxQueue: o.maxQueue, MaxQueuePerTenant: o.maxQueueTen, Timeout: o.holdTimeout}}
	routes := discovery.NewRoutes(c, ns, source, table, log)
	driftMon := home.NewGatewayDrift(name, reg, log)                                       // counts the logged predictions for the operator (home/drift.go)
	preds, err := openGatewayPredictions(ctx, o.predictions, c, reg, log, driftMon.Sink()) // before the cache starts (routes.Run)
	if err != nil {
		return err
	}
	shards, err := newGatewayShards(cfg, scheme, ns, log) // route objects (gateway_routes.go)
	if err != nil {
		return err
	}
	stls, err := o.tls.Server(log)
	if err != nil {
		return err
	}
	opFiles, err := operatorClientFiles(o.operatorURL, o.operatorCA, log)
	if err != nil {
		return err
	}
	var opTransport http.RoundTripper = http.DefaultTransport
	if opFiles != nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = opFiles.config()
		opTransport = t
	}
	replicaFiles, err := o.replicaTLS.load(log)
	if err != nil {
		return err
	}
	gwToken, err := newGatewayToken(o.tokenFile, log)
	if err != nil {
		return err
	}
	// The gateway's own calls to the operator carry its current token.
	opClient := &http.Client{Timeout: 5 * time.Second, Transport: tokenTransport{base: opTransport, token: gwToken.get}}
	infAuth, oidc, err := gatewayAuth(ctx, o.authMode, o.operatorURL, opClient, gwToken.get(), o.oidc, log)
	if err != nil {
		return err
	}
	client := discovery.NewClient(o.operatorURL, opClient)
	waker := discovery.NewWaker(name, client, routes, log)
	reg.MustRegister(gateway.NewQueueCollector(table)) // the fair queues of capped deployments
	act := activator.New(table, waker, activator.Options{Timeout: o.holdTimeout, MaxQueue: o.maxQueue, MaxQueuePerTenant: o.maxQueueTen, Registerer: reg, Tracer: tr.Tracer})
	// Tenant limits come from the operator; each gateway enforces its
	// share, 1/N of N gateways as the operator counts them (docs/limits.md).
	var reporter *discovery.Reporter
	limiter, limits := home.NewLimiter(client, limit.NewMetrics(reg, 0), func() float64 { return 1 / float64(reporter.Gateways()) }, log)
	table.QueueOptions.Weight = func(tenant string) int { return int(limiter.Weight(tenant, "")) }
	aq, closeAsync, err := o.async.Open(ctx, nil, "", "")
	if err != nil {
		return err
	}
	defer closeAsync()
	secret, err := o.async.Secret("")
	if err != nil {
		return err
	}
	ready := func() bool {
		select {
		case <-routes.Synced():
			return ctx.Err() == nil
		default:
			return false
		}
	}
	reqReg := prometheus.NewRegistry() // the request metrics alone, which the demand reports read (reqstats.Tee)
	gwOpts := gateway.Options{
		MaxBodyBytes:     o.maxBodyBytes,
		MaxBufferedBytes: o.maxBufferedBytes,
		Budget:           &gateway.BodyBudget{}, // shared by REST and gRPC
		Limits:           o.limits,
		HoldTimeout:      o.holdTimeout,
		Logger:           log,
		Metrics:          gateway.NewMetrics(reqstats.Tee{A: reg, B: reqReg}),
		Version:          version,
		Ready:            ready,
		Shards:           shards.table,
		Limiter:          limiter,
		Tracer:           tr.Tracer,
		Predictions:      preds.gateway(),
	}
	var worker *queue.Worker    // runs async requests through gw (below)
	waiters := &queue.Waiters{} // the results it stores wake GETs waiting for them
	if aq != nil {
		gwOpts.Async = &gateway.Async{Queue: aq, Waiters: waiters, Wake: func(dep string) { worker.Enqueued(dep) }, CallbackHosts: o.async.CallbackHosts, MaxBodyBytes: o.async.MaxBodyBytes}
	}
	if infAuth != nil {
		gwOpts.Auth = infAuth
	}
	if replicaFiles != nil {
		// Replicas serve mutual TLS: https endpoints, a client certificate.
		gwOpts.ReplicaTLS = replicaFiles.config()
		routes.UseHTTPS()
	}
	grpcOpts := gwOpts
	grpcOpts.TLS = stls.GRPCConfig()
	metrics, err := metricsHandler(o.metricsAuth, infAuth, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}), log)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "routes not synced yet, or shutting down", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	if o.adminProxy {
		admin, err := adminProxy(o.operatorURL, opTransport)
		if err != nil {
			return err
		}
		mux.Handle("/v1/", liftStreamDeadlines(admin))
		mux.Handle("/ui", admin) // the dashboard, served by the operator beside its API
		mux.Handle("/ui/", admin)
	}
	// The front server serves the gateway's routes itself, the rest here.
	gw := gateway.New(table, act, gwOpts)
	if aq != nil {
		// Every gateway drains the shared queue; leases keep a request
		// on one of them at a time.
		worker = queue.NewWorker(aq, gw, queue.WorkerOptions{Lease: o.async.Lease, Concurrency: home.AsyncPace(table), Logger: log, Waiters: waiters,
			Callbacks: queue.CallbackOptions{Secret: secret, AllowedHosts: o.async.CallbackHosts}})
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w (pick another address with --addr)", o.addr, err)
	}
	var grpcLn net.Listener
	if o.grpcAddr != "" {
		if grpcLn, err = net.Listen("tcp", o.grpcAddr); err != nil {
			ln.Close()
			return fmt.Errorf("cannot listen on %s for gRPC: %w (pick another address with --grpc-addr, or disable gRPC with --grpc-addr '')", o.grpcAddr, err)
		}
	}

	bgCtx, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	preds.start()
	if preds != nil {
		go driftMon.Run(bgCtx, o.operatorURL, opClient)
	}
	defer preds.finish()
	routesDone := make(chan error, 1)
	go func() { routesDone <- routes.Run(bgCtx) }()
	go shards.run(bgCtx)
	reporter = &discovery.Reporter{Gateway: name, Source: routes, Client: client, Every: o.reportEvery, Logger: log,
		Requests: reqstats.Gathered{Gatherer: reqReg}} // for the operator's request statistics

	go func() { _ = reporter.Run(bgCtx) }()
	go limits.Run(bgCtx)
	if worker != nil {
		go func() {
			// Not before the routing table has its first sync: a queued
			// request would find its deployment unknown (404, a final
			// result) in an empty table.
			select {
			case <-routes.Synced():
				_ = worker.Run(bgCtx)
			case <-bgCtx.Done():
			}
		}()
	}
	go stls.Run(bgCtx)
	go gwToken.run(bgCtx)
	if opFiles != nil {
		go opFiles.run(bgCtx)
	}
	if replicaFiles != nil {
		go replicaFiles.run(bgCtx)
	}
	if oidc != nil {
		go func() { _ = oidc.Run(bgCtx) }() // refetches the issuer's keys hourly
	}

	srv := gateway.NewServer(gw, mux) // keep-alive connections close gracefully on SIGTERM
	ln = stls.HTTPListener(gw.Listener(ln))
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ln) }()
	grpcDone := make(chan error, 1)
	if grpcLn != nil {
		go func() { grpcDone <- gateway.NewGRPC(table, act, grpcOpts).Serve(ctx, grpcLn, o.drainTimeout) }()
	} else {
		grpcDone <- nil
	}
	log.Info("ebb gateway listening", "addr", ln.Addr().String(), "grpcAddr", addrOf(grpcLn), "tls", stls != nil, "namespace", ns, "operator", o.operatorURL, "replicaTLS", replicaFiles != nil, "name", name)

	select {
	case <-ctx.Done():
	case err := <-routesDone:
		srv.Close()
		return fmt.Errorf("gateway: watching the cluster stopped: %w", err)
	case err := <-srvDone:
		return fmt.Errorf("gateway stopped: %w", err)
	}
	log.Info("shutting down: draining in-flight requests", "timeout", o.drainTimeout.String())
	drainCtx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
	defer cancel()
	if err := srv.Shutdown(drainCtx, drain.KeepAliveGrace); err != nil {
		log.Warn("gateway drain incomplete", "err", err)
	}
	if err := <-grpcDone; err != nil {
		log.Warn("gRPC gateway drain incomplete", "err", err)
	}
	preds.finish() // after the drain: the requests it finished are logged
	stopBG()
	<-routesDone
	return nil
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// adminProxy passes admin API requests to the operator's Service, which
// sends them to the leader. Responses stream (ebb logs -f).
func adminProxy(operatorURL string, transport http.RoundTripper) (http.Handler, error) {
	u, err := url.Parse(operatorURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("--operator-url %q is not a URL like http://ebb-operator:8090", operatorURL)
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.FlushInterval = -1
	p.Transport = transport
	p.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		b, _ := json.Marshal(map[string]any{"error": map[string]string{
			"code":    "store/unavailable",
			"message": fmt.Sprintf("the operator's admin API at %s cannot be reached (%v); nothing was changed: retry, or check the operator pods", operatorURL, err),
		}})
		_, _ = w.Write(b)
	}
	return p, nil
}

// operatorClientFiles returns the TLS files of an https --operator-url
// with --operator-ca (the certificate verified for the URL's host); nil
// when the system's CAs are enough or the URL is plain http.
func operatorClientFiles(operatorURL, caFile string, log *slog.Logger) (*clientFiles, error) {
	if caFile == "" {
		return nil, nil
	}
	u, err := url.Parse(operatorURL)
	if err != nil || u.Hostname() == "" {
		return nil, fmt.Errorf("--operator-url %q is not a URL like https://ebb-operator:8090", operatorURL)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("--operator-ca is given but --operator-url %s is not https: use an https URL, or drop --operator-ca", operatorURL)
	}
	f, err := newClientFiles(caFile, "", "", u.Hostname(), true, log)
	if err != nil {
		return nil, fmt.Errorf("--operator-ca: %w", err)
	}
	return f, nil
}

// load returns the replica client TLS files: nil without
// --replica-tls-cert, when replicas are dialled over plain http.
func (o replicaClientTLS) load(log *slog.Logger) (*clientFiles, error) {
	if o.certFile == "" && o.keyFile == "" {
		if o.caFile != "" {
			return nil, errors.New("--replica-tls-ca needs --replica-tls-cert and --replica-tls-key: replicas that serve TLS ask for a client certificate")
		}
		return nil, nil
	}
	f, err := newClientFiles(o.caFile, o.certFile, o.keyFile, o.serverName, false, log)
	if err != nil {
		return nil, fmt.Errorf("--replica-tls-cert/--replica-tls-key/--replica-tls-ca: %w", err)
	}
	return f, nil
}

// liftStreamDeadlines lifts the read and write deadlines of log streams
// (?follow=true) passed through to the operator, which have no end the
// server's timeouts could foresee.
func liftStreamDeadlines(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("follow") == "true" {
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Time{})
			_ = rc.SetWriteDeadline(time.Time{})
		}
		h.ServeHTTP(w, r)
	})
}
