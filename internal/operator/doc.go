// Package operator runs ModelDeployments (api/v1alpha1) on Kubernetes with
// the same control loop as `ebb up` (internal/control): the loop decides and
// acts, and this package gives it a Store over the Kubernetes API, the
// gateways' demand, and Kubernetes bookkeeping around it.
//
//   - Store: deployments are the ModelDeployments of one namespace
//     (converted with (*ModelDeployment).Deployment, defaulted, validated);
//     replica records are the replica pods themselves, labelled
//     LabelDeployment, whose handles the pod backend rebuilds (PodHandle).
//   - A controller-runtime reconciler watches ModelDeployments and the pods
//     and Services they own. It adds a finalizer, keeps a headless Service
//     per ModelDeployment (kube-controller-manager then keeps its
//     EndpointSlices, which gateways read), and notifies the control loop.
//     It never creates or deletes pods. On deletion the loop, reading the
//     ModelDeployment as gone, drains and stops the pods, and the
//     reconciler removes the finalizer once the API server lists none.
//   - A status writer publishes the loop's status (replicas, ready, desired,
//     per-replica cold-start phases, model version), observedGeneration,
//     the scale subresource's selector, and conditions Ready, Scaling,
//     Failed, Rollout (the latest canary rollout, as the leader's rollout
//     manager reports it: RolloutState) and Shadow (spec.shadow, with what
//     the gateways compared of it, refreshed at most every
//     shadowFiguresEvery), whenever they change (checked every second).
//   - Every change of desired replicas becomes an Event on the
//     ModelDeployment, ScaledUp or ScaledDown, with the autoscaler's reason.
//   - Cold start (spec.coldStart): the reconciler keeps warmPool balloon
//     pods per ModelDeployment (LabelBalloon, fixed names BalloonName(md,
//     i), the replica's resources and placement, the warm-pool
//     PriorityClass of ColdStartOptions, `ebb pause`), so a replica
//     preempts one instead of waiting for a node; and, with prePull, a
//     DaemonSet (PrePullName) that pulls the replica image on every
//     eligible node. Balloons have no LabelDeployment: the control loop
//     and the Service never see them; a second cache watches them.
//   - Demand: gateways POST what they measure every second (DemandPath) and
//     wake cold deployments (WakePath); Demand sums the latest report of
//     each gateway for the loop's autoscaler. The reports also carry each
//     gateway's cumulative request counters, which RequestTotals sums
//     into the request statistics of the admin API (reqstats).
//
// # No duplicate pods (expectations)
//
// KubeRay's "expectations" guard against a reconciler that reads a stale
// cache, does not see the pods it just created, and creates them again.
// ebb has no such reconciler: exactly one goroutine creates replica pods,
// the control loop, and only on the leader (leader election). It records a
// replica in memory before it asks the backend to create the pod, so
// in-flight creations count toward the desired replicas at once — that
// record is the expectation, and it is never read from a cache. When the
// loop starts (a new process or a new leader) it lists the replica pods
// from the API server, not from the cache (a quorum read, which includes
// every pod whose creation succeeded), reattaches to them, and starts with
// desired = what runs. The reconciler's own cached reads only decide
// finalizers and Services, which are idempotent. A re-run reconcile, a stale
// cache or a restart therefore never adds a pod.
//
// Stopping the operator leaves the pods running: the control loop stops
// every replica when it shuts down, which is right on a laptop, so the
// operator detaches the backend first and the next leader recovers them.
package operator
