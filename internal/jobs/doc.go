// Package jobs runs batch inference jobs (serving.Job): every row of a
// dataset (CSV, JSONL or Parquet, on file:// or s3://) through a model, the
// outputs written to one location, before a deadline and within a lease
// budget (max replicas, max replica-hours, allowed windows).
//
// # Planning
//
// Planner is pure: from a measured rate per replica, the rows left, the
// time (injected) and the lease, Plan chooses the fewest replicas that
// finish by the deadline — which also spends the fewest replica-hours,
// since fewer replicas start fewer times — or refuses with a
// *serving.JobRefusal that says what the job needs against what the lease
// allows (replicas, replica-hours, time inside the windows). Replan checks
// a running plan against the rate measured since: it sizes the pool again
// when the rate drifts, and warns at once, with the numbers, when no size
// meets the deadline within the lease, running on at the most the lease
// allows. Work happens only inside the lease's windows, when it has any.
//
// # Running
//
// A Runner runs one job: Run(ctx) blocks until the job ends (Succeeded,
// Failed, Cancelled, Refused) or ctx does. It
//
//  1. opens the input, checks the mapped columns are there, counts the
//     rows and splits them into chunks of spec.chunkRows, each with a
//     stable id: its index and a hash of the input's identity (location,
//     version, format, mapping, chunk size);
//  2. gets a deployment from the Scaler (an existing one, fed at batch
//     priority, or the job's own, from zero);
//  3. probes: sends the first chunks one at a time on one replica, and
//     plans from the rate of the last (the first pays the cold start);
//     a job that cannot fit is Refused here, before more replicas start;
//  4. sends the rest through the Predictor, Options.PerReplica chunks in
//     flight per replica, the input read a few chunks ahead, each chunk
//     an OIP v2 request with binary tensor data that asks for binary
//     outputs (JSON for tensors of a thousand rows costs more CPU than
//     the model), scaling through the Scaler as the plan says,
//     pausing outside the windows, re-planning as the rate drifts,
//     counting the replica-hours it holds and failing when the budget is
//     spent;
//  5. writes the output from the chunks' parts and hands its replicas
//     back (its own deployment is deleted).
//
// # Checkpoints, crashes and atomic output
//
// A chunk's results (its part) go to the job's parts log beside the
// output (file://: a hidden directory; s3://: objects under
// OUTPUT.parts/), as a frame that names the chunk's id and carries a
// checksum (partslog.go). Each Run appends to segments of its own: on
// files one, synced in groups; on S3, which cannot append, one object
// per group, each written by one PUT. Chunks are checkpointed in groups
// (commit.go): every Options.CommitChunks chunks, or Options.CommitDelay
// after the first of a group, the segment is synced, and only then is
// each chunk of the group recorded in the store (store.JobStore's
// job_chunks), keyed by (job, chunk id), which keeps the first record of
// a chunk put twice. The checkpoint of a chunk is both: its record and
// a whole frame. After a crash (SIGKILL, a cancelled ctx), the next Run
// reads the records, reads the segments up to the first frame that is
// not whole (a torn tail: never synced, so never recorded), and sends
// only the chunks that lack either. A chunk whose frame was synced but
// not recorded is sent again, and its new frame, in a later segment, is
// the one read: no row is lost or written twice. The final output is
// assembled from one frame per chunk, in chunk order — rows in input
// order — into a temporary file renamed over the output, or one S3 PUT:
// a reader sees the whole output or none. The parts log is removed when
// the job ends.
//
// The replica-hours a job has used are written with its status every few
// seconds; the time between the last write and a crash is not counted.
//
// # Admission
//
// Admission checks a job at submit, before it is stored: its input reads
// and has the mapped columns (else an *InputError naming the column and
// its tensor), its output can be written, and its windows leave time
// before the deadline; with spec.rowsPerSecond it also plans, and refuses
// an impossible lease with the numbers.
package jobs
