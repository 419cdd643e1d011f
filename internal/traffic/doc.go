// Package traffic holds the pure decisions of safe rollouts: how requests
// are split between the versions of a deployment, when a progressive canary
// advances, is promoted or is rolled back, and whether a shadow version's
// outputs agree with the primary's. It does no I/O, starts no goroutine and
// reads no clock: every function that depends on time takes now, so the
// control loop applies its decisions and a test replays an hour of traffic
// in a moment.
//
// The package has four parts:
//
//   - window.go: a Meter per version, fed by the gateway on the hot path
//     (Observe), summarised over any recent interval (Snapshot) as a
//     Measurement: requests, errors, error rate, p50 and p99. Memory is
//     bounded; quantiles are within 1/32 (3.2%) of the exact ones.
//     export.go moves a Meter's completed per-second Buckets elsewhere
//     (Export) and adds them up exactly (Merge): how a cluster's gateway
//     pods send what they measured to the operator that judges rollouts.
//   - canary.go, phase.go: the progressive canary. Decide is a pure function
//     of (now, Policy, State, canary and primary Measurements) that returns
//     Wait, Advance, Promote or Rollback; Apply moves the State. Too little
//     traffic always means Wait, never a pass: no bound is judged on fewer
//     than Policy.MinRequests requests.
//   - split.go: a weighted Split of requests between targets, random (Pick)
//     or sticky by a key (PickKey) such that a key only ever moves onto the
//     canary as its weight grows.
//   - compare.go, tally.go: shadow traffic judged by its outputs. Compare
//     checks two sets of output tensors within a Tolerance; a Tally counts
//     the results, keeps a few size-capped sample disagreements, and gives a
//     Verdict that stays pending until enough requests were compared.
package traffic
