package operator

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/control"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Options configure an Operator; zero values take the defaults shown.
type Options struct {
	// Namespace is the namespace whose ModelDeployments the operator
	// serves (required). The manager's cache must cover it.
	Namespace string
	// Control tunes the control loop. Demand and OnScale are set by the
	// operator; Logger defaults to Logger below.
	Control control.Options
	// StatusEvery is how often changed statuses are written; default 1s.
	StatusEvery time.Duration
	// DemandExpiry is how long a gateway's demand report counts; default
	// 5s.
	DemandExpiry time.Duration
	// Workers is the number of concurrent reconciles; default 4.
	Workers int
	// Clock drives the status writer and demand expiry; default real.
	Clock clock.WithTicker
	// Logger; default slog.Default().
	Logger *slog.Logger
	// ColdStart configures warm pools (balloon pods) and pre-pull
	// DaemonSets (spec.coldStart); give it the pod backend's image.
	ColdStart ColdStartOptions
	// Auth, when set, guards what gateways call (demand reports, wake-ups,
	// token verification at TokenVerifyPath): each needs a token with
	// scope gateway, or admin. Nil: those endpoints are open (auth off).
	Auth GatewayAuth
}

// Operator serves the ModelDeployments of one namespace: a reconciler keeps
// finalizers and Services and notifies the control loop, the control loop
// (internal/control, as in `ebb up`) scales replica pods through the pod
// backend, a status writer publishes what the loop observes, and an HTTP
// handler takes the demand gateways report.
type Operator struct {
	opts    Options
	mgr     manager.Manager
	store   *Store
	backend *detachable
	ctl     *control.Controller
	demand  *Demand
	events  record.EventRecorder
	log     *slog.Logger
	// rollouts and figures are what the Rollout and Shadow conditions
	// show.
	rollouts *RolloutStates
	figures  *shadowFigures
	// pools is set when the cluster has the ModelPool CRD.
	pools bool
}

// New wires an Operator into mgr (a manager with leader election, whose
// scheme has v1alpha1 and core/v1): the reconciler, the control loop and
// the status writer run on the leader only. backend is the pod backend
// (replica/kube) and handle rebuilds replica handles from its pods. Run
// the operator with mgr.Start; serve Handler over HTTP on every replica of
// the operator.
func New(mgr manager.Manager, backend replica.Backend, handle PodHandle, opts Options) (*Operator, error) {
	if opts.Namespace == "" {
		return nil, fmt.Errorf("operator: no namespace: give the namespace to serve (--namespace)")
	}
	if opts.StatusEvery <= 0 {
		opts.StatusEvery = time.Second
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	o := &Operator{
		opts:    opts,
		mgr:     mgr,
		backend: &detachable{Backend: backend},
		demand:  NewDemand(opts.DemandExpiry, opts.Clock.Now),
		events:  mgr.GetEventRecorderFor("ebb-operator"),
		log:     opts.Logger,

		rollouts: NewRolloutStates(),
		figures:  newShadowFigures(shadowFiguresEvery),
	}
	o.store = NewStore(mgr.GetCache(), mgr.GetAPIReader(), mgr.GetClient(), opts.Namespace, handle, opts.Logger)
	copts := opts.Control
	copts.Demand = o.demand
	copts.Cluster = true // pods apply spec.template; nothing is ignored
	if copts.Logger == nil {
		copts.Logger = opts.Logger
	}
	if copts.Clock == nil {
		copts.Clock = opts.Clock
	}
	pools, err := hasPools(mgr.GetRESTMapper())
	if err != nil {
		return nil, err
	}
	var ctlStore control.Store = o.store
	if pools {
		ctlStore = &poolingStore{Store: o.store, pools: NewPoolStore(mgr.GetAPIReader(), mgr.GetClient(), opts.Namespace)}
	} else {
		opts.Logger.Warn("the cluster has no ModelPool CRD: multi-model pools are off (apply deploy/crds/serving.ebb.dev_modelpools.yaml and restart the operator)")
	}
	o.pools = pools
	o.ctl = control.New(ctlStore, o.backend, &routing.Table{}, copts)
	o.ctl.OnEvent(o.recordEvent)

	// Balloon pods have no LabelDeployment, so the manager's cache (see
	// CacheOptions) does not hold them: a second cache does.
	balloons, err := cache.New(mgr.GetConfig(), balloonCacheOptions(cache.Options{
		Scheme: mgr.GetScheme(),
		Mapper: mgr.GetRESTMapper(),
	}, opts.Namespace))
	if err != nil {
		return nil, fmt.Errorf("operator: balloon pod cache: %w", err)
	}
	if err := mgr.Add(balloons); err != nil {
		return nil, err
	}
	r := &reconciler{
		client:   mgr.GetClient(),
		cache:    mgr.GetCache(),
		api:      mgr.GetAPIReader(),
		scheme:   mgr.GetScheme(),
		ctl:      o.ctl,
		log:      opts.Logger,
		balloons: balloons,
		cold:     opts.ColdStart,
		events:   o.events,
	}
	if err := r.setup(mgr, balloons, opts.Workers); err != nil {
		return nil, fmt.Errorf("operator: set up reconciler: %w", err)
	}
	if pools {
		// Pool pods have no LabelDeployment either: a third cache.
		podCache, err := cache.New(mgr.GetConfig(), poolPodCacheOptions(cache.Options{
			Scheme: mgr.GetScheme(),
			Mapper: mgr.GetRESTMapper(),
		}, opts.Namespace))
		if err != nil {
			return nil, fmt.Errorf("operator: pool pod cache: %w", err)
		}
		if err := mgr.Add(podCache); err != nil {
			return nil, err
		}
		pr := &poolReconciler{ctl: o.ctl, pods: podCache, del: r, log: opts.Logger}
		if err := pr.setup(mgr, podCache, opts.Workers); err != nil {
			return nil, fmt.Errorf("operator: set up pool reconciler: %w", err)
		}
	}
	if err := mgr.Add(manager.RunnableFunc(o.runControl)); err != nil {
		return nil, err
	}
	sw := &statusWriter{
		client:    mgr.GetClient(),
		cache:     mgr.GetCache(),
		namespace: opts.Namespace,
		observe:   o.observe,
		clock:     opts.Clock,
		every:     opts.StatusEvery,
		log:       opts.Logger,
	}
	if pools {
		sw.observePool = o.observePool
	}
	if err := mgr.Add(sw); err != nil {
		return nil, err
	}
	return o, nil
}

// Controller returns the operator's control loop.
func (o *Operator) Controller() *control.Controller { return o.ctl }

// Demand returns the demand the gateways report.
func (o *Operator) Demand() *Demand { return o.demand }

// Meters returns the request meters the gateways report with their
// demand, merged per route key: the cluster's measurer of rollouts. Only
// the leader receives reports (see Handler).
func (o *Operator) Meters() *Meters { return o.demand.Meters() }

// Shadows returns what the gateways compared of each deployment's current
// shadow (spec.shadow), summed over the gateways that reported it: the
// cluster's rollout.Shadows. Only the leader receives reports (see
// Handler).
func (o *Operator) Shadows() ShadowSource {
	return ShadowSource{Shadows: o.demand.Shadows(), Spec: o.shadowSpec}
}

// shadowSpec returns the spec.shadow of a live ModelDeployment, from the
// cache; nil for none.
func (o *Operator) shadowSpec(name string) *serving.Shadow {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var md v1alpha1.ModelDeployment
	if err := o.mgr.GetCache().Get(ctx, client.ObjectKey{Namespace: o.opts.Namespace, Name: name}, &md); err != nil || !md.DeletionTimestamp.IsZero() {
		return nil
	}
	return md.Spec.Shadow
}

// runControl runs the control loop until ctx ends, then leaves the replica
// pods running for the next leader (see detachable).
func (o *Operator) runControl(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		o.backend.detach()
		cancel()
	})
	defer stop()
	err := o.ctl.Run(runCtx)
	o.ctl.Wait()
	return err
}

// RolloutState records the status of a deployment's canary rollout for
// its Rollout condition: give it to the rollout manager the leader runs as
// rollout.Options.State.
func (o *Operator) RolloutState(deployment string, s rollout.Status) {
	o.rollouts.Set(deployment, s)
}

// observe gathers what the operator knows of a deployment for its status.
func (o *Operator) observe(md *v1alpha1.ModelDeployment) observation {
	name := md.Name
	gen, invalid, seen := o.store.Observed(name)
	obs := observation{control: withShadowReplicas(o.ctl.Status(name), o.ctl.Status(name+serving.TrackSep+serving.ShadowTag)), seen: seen, generation: gen, invalid: invalid}
	if s, ok := o.rollouts.Get(name); ok {
		obs.rollout = &s
	}
	sum, reported := o.demand.Shadows().Summary(name, md.Spec.Shadow)
	obs.shadow = o.figures.show(name, md.Spec.Shadow, sum, reported, o.opts.Clock.Now())
	return obs
}

// withShadowReplicas returns st with the replica statuses of its shadow
// track (shadow) that st does not list yet: gateways that find replicas
// by EndpointSlice, which does not say what a pod serves, tell the
// shadow's replicas by them. The shadow's replicas are not counted in
// st's replica counts: they serve no client.
func withShadowReplicas(st, shadow serving.Status) serving.Status {
	if len(shadow.ReplicaStatuses) == 0 {
		return st
	}
	listed := make(map[string]bool, len(st.ReplicaStatuses))
	for _, rs := range st.ReplicaStatuses {
		listed[rs.ID] = true
	}
	st.ReplicaStatuses = slices.Clone(st.ReplicaStatuses)
	for _, rs := range shadow.ReplicaStatuses {
		if !listed[rs.ID] {
			rs.Track = cmp.Or(rs.Track, serving.ShadowTag)
			st.ReplicaStatuses = append(st.ReplicaStatuses, rs)
		}
	}
	return st
}

// Handler serves the operator's HTTP API on every operator replica:
// DemandPath and WakePath for gateways, /healthz (alive), and /readyz,
// which answers 200 only on the leader, so that the operator's Service
// sends gateways' reports to the replica that acts on them.
func (o *Operator) Handler() http.Handler {
	mux := http.NewServeMux()
	api := o.demand.Handler(o.ctl)
	if a := o.opts.Auth; a.Authenticator != nil {
		api = auth.Require(a.Authenticator, auth.Gateway, api)
		mux.Handle(TokenVerifyPath, auth.Require(a.Authenticator, auth.Gateway, auth.VerifyHandler(a.Authenticator, a.Expiry)))
	}
	mux.Handle(DemandPath, api)
	mux.Handle(WakePath, api)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-o.mgr.Elected():
			select {
			case <-o.ctl.Loaded():
				w.WriteHeader(http.StatusOK)
				return
			default:
			}
		default:
		}
		http.Error(w, "not the leader, or the control loop is loading", http.StatusServiceUnavailable)
	})
	return mux
}

// CacheOptions returns the manager cache options the operator needs: the
// namespace only, and of pods and Services only those labelled
// LabelDeployment.
func CacheOptions(namespace string) cache.Options {
	has, _ := labels.NewRequirement(LabelDeployment, selection.Exists, nil)
	owned := labels.NewSelector().Add(*has)
	return cache.Options{
		DefaultNamespaces: map[string]cache.Config{namespace: {}},
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:     {Label: owned},
			&corev1.Service{}: {Label: owned},
		},
	}
}

// NewScheme returns a scheme with the types the operator and the gateway
// read and write: the built-in Kubernetes types and v1alpha1.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}
