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
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/examples/diabetes"
	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/control"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/replica/process"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/postgres"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type upOptions struct {
	addr         string
	dataDir      string
	demo         bool
	holdTimeout  time.Duration
	maxQueue     int
	drainTimeout time.Duration
	logLevel     string
	storeDSN     string // PostgreSQL store; empty: SQLite in dataDir
	grpcAddr     string // OIP v2 gRPC gateway; empty: off
	grpcAddrSet  bool   // --grpc-addr given: failing to listen on it is fatal
	registryOptions
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
	f.StringVar(&o.grpcAddr, "grpc-addr", "127.0.0.1:8081", `address for the OIP v2 gRPC API (KServe/Triton GRPCInferenceService); "" disables it`)
	f.StringVar(&o.dataDir, "data-dir", ".ebb", "directory for the store, replica logs and demo files")
	f.StringVar(&o.storeDSN, "store-dsn", "", "PostgreSQL URL (postgres://user:password@host:5432/db) of a shared store to use instead of SQLite in --data-dir; default $EBB_STORE_DSN")
	f.BoolVar(&o.demo, "demo", false, "deploy the bundled diabetes example and print a request to try")
	f.DurationVar(&o.holdTimeout, "hold-timeout", 60*time.Second, "longest a request is held while its deployment has no ready replica")
	f.IntVar(&o.maxQueue, "max-queue", 10000, "most requests held per cold deployment; more get 503 with Retry-After")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "how long in-flight requests may take to finish on shutdown or scale-down")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	addRegistryFlags(f, &o.registryOptions)
	return cmd
}

func runUp(ctx context.Context, o upOptions) error {
	log, err := newUpLogger(o.logLevel)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	st, err := openUpStore(ctx, o)
	if err != nil {
		return err
	}
	defer st.Close()
	backend, err := process.New(process.Options{LogDir: filepath.Join(o.dataDir, "logs")})
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	routes := &routing.Table{}
	var ctl *control.Controller
	models, err := newModelRegistry(o.registryOptions, o.dataDir, st, reg, log, func(model string) { ctl.NotifyModel(model) })
	if err != nil {
		return err
	}
	ctl = control.New(st, backend, routes, control.Options{
		Logger:       log,
		Metrics:      control.NewMetrics(reg),
		DrainTimeout: o.drainTimeout,
		Resolver:     models.resolver,
	})
	act := activator.New(routes, ctl, activator.Options{Timeout: o.holdTimeout, MaxQueue: o.maxQueue, Registerer: reg})
	gwOpts := gateway.Options{
		HoldTimeout: o.holdTimeout,
		Logger:      log,
		Metrics:     gateway.NewMetrics(reg),
		Version:     version,
		Ready: func() bool {
			select {
			case <-ctl.Loaded():
				return ctx.Err() == nil
			default:
				return false
			}
		},
	}
	gw := gateway.New(routes, act, gwOpts)
	mux := http.NewServeMux()
	admin := api.New(st, ctl, log)
	admin.MountModels(models.svc)
	mux.Handle("/v1/", admin)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("/", gw)

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w (is another ebb running? pick another address with --addr)", o.addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
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
	go models.svc.RunRetirement(ctlCtx, o.retireEvery, ctl.InUse, o.retire)
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ln) }()
	// The gRPC gateway drains by itself when ctx ends (SIGTERM).
	grpcDone := make(chan error, 1)
	if grpcLn != nil {
		log.Info("gRPC gateway listening", "addr", grpcLn.Addr().String())
		go func() { grpcDone <- gateway.NewGRPC(routes, act, gwOpts).Serve(ctx, grpcLn, o.drainTimeout) }()
	} else {
		grpcDone <- nil
	}

	select {
	case <-ctl.Loaded():
	case err := <-ctlDone:
		srv.Close()
		return err
	}
	base := "http://" + ln.Addr().String()
	log.Info("ebb is up", "addr", base, "dataDir", o.dataDir, "version", version)
	if o.demo {
		if err := deployDemo(ctx, st, ctl, o.dataDir, base); err != nil {
			log.Error("demo deployment failed", "err", err)
		}
	}

	select {
	case <-ctx.Done():
	case err := <-srvDone:
		stopCtl()
		<-ctlDone
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
	stopCtl()
	err = <-ctlDone
	ctl.Wait()
	log.Info("ebb stopped")
	return err
}

// upStore is what ebb up needs of its store; the SQLite and PostgreSQL
// stores both provide it.
type upStore interface {
	control.Store
	api.Store
	registry.Store
	Close() error
}

// openUpStore opens the PostgreSQL store named by --store-dsn or
// $EBB_STORE_DSN, else the SQLite store in the data dir.
func openUpStore(ctx context.Context, o upOptions) (upStore, error) {
	dsn := o.storeDSN
	if dsn == "" {
		dsn = os.Getenv("EBB_STORE_DSN")
	}
	if dsn != "" {
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	st, err := sqlite.Open(ctx, filepath.Join(o.dataDir, "ebb.db"))
	if err != nil {
		return nil, err
	}
	return st, nil
}

// demoStore is what the demo needs to create its deployment.
type demoStore interface {
	CreateDeployment(ctx context.Context, d serving.Deployment) (serving.Deployment, error)
}

// deployDemo writes the bundled diabetes model into the data dir, deploys it
// unless a deployment of that name exists, and prints a request to try.
func deployDemo(ctx context.Context, st demoStore, ctl *control.Controller, dataDir, base string) error {
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
	fmt.Printf(`
ebb is serving the demo deployment "diabetes" (XGBoost, scaled to zero until the first request).
Try it:

  curl -s -X POST %s/v2/models/diabetes/infer -H 'Content-Type: application/json' -d @%s

  go run ./cmd/ebb get deployments diabetes --server %s    # replicas, cold-start phases
  curl -s %s/metrics | grep ebb_    # Prometheus metrics

Press Ctrl-C to stop; replicas are drained and stopped.

`, base, req, base, base)
	return nil
}

// newUpLogger logs JSON when stderr is not a terminal, text otherwise.
func newUpLogger(level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler = slog.NewJSONHandler(os.Stderr, opts)
	if isTerminal(os.Stderr) {
		h = slog.NewTextHandler(os.Stderr, opts)
	}
	l := slog.New(h)
	slog.SetDefault(l)
	return l, nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
