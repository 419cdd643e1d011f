// Package cpusched puts a process under Linux's SCHED_BATCH policy.
//
// `ebb up` runs its replicas beside the gateway on the same CPUs. Under the
// default policy every request the gateway writes to a replica wakes the
// replica, which the scheduler then lets preempt the gateway at once: the
// gateway stops between two requests, the replica answers one and sleeps,
// and the two take turns request by request (measured: about 0.75
// involuntary context switches per request at 64 connections). A thread
// under SCHED_BATCH does not preempt on its wakeup (sched(7): "without
// interactivity causing extra preemptions between the workload's tasks");
// the gateway keeps forwarding what it has, the replica then answers all
// of it in one turn. Tick preemption still shares the CPU, and the
// gateway, under the default policy, still preempts a busy replica when a
// request or an answer arrives.
package cpusched

// Batch moves every thread of this process, and so every thread and
// process it starts later (they inherit the policy), to SCHED_BATCH,
// keeping their nice values. Elsewhere than Linux it does nothing.
func Batch() error { return batch() }
