// Package pool decides where the models of a multi-model pool live. A pool
// is a set of replicas of one engine that host many models each, loading
// and unloading them on demand; this package says which replicas host
// which model and what each replica loads and unloads, and nothing else:
// every decision is a pure function of (now, state, demand, policy), with
// no clock read and no I/O, so the control loop acts on it and a test
// replays a day of traffic in a moment.
//
// Placement (shard.go). Each model is placed on k of the pool's N replicas
// chosen by rendezvous hashing: every (model, replica) pair gets a score
// from a stable 64-bit hash and the model's shard is its k best-scoring
// replicas. A model's shard is a pseudo-random k-subset, so two models
// share all k replicas with probability 1/C(N,k) (1 in 120 for k=3 of 10)
// and one model that is hot or crashes its replicas leaves every model
// with another replica in its shard unharmed. When a replica joins, a
// model's shard changes only if the newcomer beats its k-th score (k/(N+1)
// of the models, one placement each: the least any balanced placement can
// move); when one leaves, only the models it held move, one placement
// each. Growing k takes the next replica in the same ranking, so a wider
// shard contains the narrower one.
//
// Hot models (width.go). A model whose load per replica of its shard
// passes the policy's target (requests in flight, or per second) gets a
// wider shard at once, up to N. It narrows only when the load would fit in
// fewer replicas at ShrinkBelow × target, and only after the load has
// stayed that low for ShrinkAfter: load that hovers at the target does
// not flip the width back and forth.
//
// Memory (plan.go). Each replica has a budget in bytes, and each model a
// size measured by the replica after it loaded it (package server reports
// it in its repository index), never guessed from its file. Plan loads a
// model that has demand on the replicas of its shard that lack it, and
// makes room by unloading the least recently used models of that replica
// that have no request in flight and no demand in this plan. It plans no
// load that would take a replica past its budget: a model never measured
// counts at Policy.DefaultBytes (or the mean of the measured ones), so the
// one error left is that estimate, and a replica loads one model at a time
// and refuses a load whose measured size does not fit (package server);
// the budget is exceeded by at most one model's size, while that model
// loads. A model bigger than a replica's whole budget is refused with
// both sizes (TooLargeError, also what CheckFits returns at deploy time).
//
// Quarantine (quarantine.go). The control loop records a Crash when a
// replica dies while a model loads or serves requests on it. A model with
// Policy.CrashLimit crashes within CrashWindow is quarantined with a
// reason: Plan stops placing it and unloads it wherever it is. Its shard's
// other models are not touched; they keep their replicas, and the crashed
// replica's slot is refilled by the replica the control loop restarts in
// it (replicas are named by slot, not by process, so a restart moves no
// model). A quarantine lasts until the control loop clears it (a new
// version of the model).
package pool
