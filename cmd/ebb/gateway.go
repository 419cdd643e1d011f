package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/discovery"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/routing"
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
	name         string
	holdTimeout  time.Duration
	maxQueue     int
	drainTimeout time.Duration
	reportEvery  time.Duration
	logLevel     string
	// endpointsFrom is where replicas are found: endpointslices or pods.
	endpointsFrom string
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
	f.StringVar(&o.addr, "addr", ":8080", "address for OIP v2 REST, /metrics, /healthz and /readyz")
	f.StringVar(&o.grpcAddr, "grpc-addr", ":8081", `address for the OIP v2 gRPC API; "" disables it`)
	f.StringVar(&o.operatorURL, "operator-url", "http://ebb-operator:8090", "base URL of the operator's demand API (its Service)")
	f.StringVar(&o.name, "name", "", "this gateway's name in demand reports; default $POD_NAME, else the host name")
	f.DurationVar(&o.holdTimeout, "hold-timeout", 60*time.Second, "longest a request is held while its deployment has no ready replica")
	f.IntVar(&o.maxQueue, "max-queue", 10000, "most requests held per cold deployment; more get 503 with Retry-After")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "how long in-flight requests may take to finish on shutdown")
	f.DurationVar(&o.reportEvery, "report-every", time.Second, "how often demand is reported to the operator")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&o.endpointsFrom, "endpoints-from", string(discovery.FromEndpointSlices), "where to find ready replicas: endpointslices (of each ModelDeployment's Service) or pods (needs pods list/watch; for clusters whose pod IPs EndpointSlices refuse, e.g. loopback)")
	return cmd
}

func runGateway(ctx context.Context, o gatewayOptions) error {
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
	table := &routing.Table{}
	routes := discovery.NewRoutes(c, ns, source, table, log)
	client := discovery.NewClient(o.operatorURL, nil)
	waker := discovery.NewWaker(name, client, routes, log)
	act := activator.New(table, waker, activator.Options{Timeout: o.holdTimeout, MaxQueue: o.maxQueue, Registerer: reg})
	ready := func() bool {
		select {
		case <-routes.Synced():
			return ctx.Err() == nil
		default:
			return false
		}
	}
	gwOpts := gateway.Options{
		HoldTimeout: o.holdTimeout,
		Logger:      log,
		Metrics:     gateway.NewMetrics(reg),
		Version:     version,
		Ready:       ready,
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "routes not synced yet, or shutting down", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.Handle("/", gateway.New(table, act, gwOpts))

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
	routesDone := make(chan error, 1)
	go func() { routesDone <- routes.Run(bgCtx) }()
	reporter := &discovery.Reporter{Gateway: name, Source: routes, Client: client, Every: o.reportEvery, Logger: log}
	go func() { _ = reporter.Run(bgCtx) }()

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ln) }()
	grpcDone := make(chan error, 1)
	if grpcLn != nil {
		go func() { grpcDone <- gateway.NewGRPC(table, act, gwOpts).Serve(ctx, grpcLn, o.drainTimeout) }()
	} else {
		grpcDone <- nil
	}
	log.Info("ebb gateway listening", "addr", ln.Addr().String(), "grpcAddr", addrOf(grpcLn), "namespace", ns, "operator", o.operatorURL, "name", name)

	select {
	case <-ctx.Done():
	case err := <-routesDone:
		srv.Close()
		return fmt.Errorf("gateway: watching the cluster stopped: %w", err)
	case err := <-srvDone:
		return fmt.Errorf("gateway stopped: %w", err)
	}
	log.Info("shutting down: draining in-flight requests", "timeout", o.drainTimeout)
	drainCtx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
	defer cancel()
	if err := srv.Shutdown(drainCtx); err != nil {
		log.Warn("gateway drain incomplete", "err", err)
	}
	if err := <-grpcDone; err != nil {
		log.Warn("gRPC gateway drain incomplete", "err", err)
	}
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
