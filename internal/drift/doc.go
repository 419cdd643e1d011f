// Package drift wires internal/monitor to what ebb serves: it watches, per
// deployment × version, how far the inputs and outputs of production
// predictions have moved from the version's reference profile.
//
// The data comes from the prediction log, never from the request path: a
// Sink is a predlog.Sink that the logger's own goroutine feeds with the
// sampled records (beside the files, through predlog.Tee), and it decodes
// each record's OIP v2 JSON request and answer into monitor.Rows by the
// profile's features: the tensors named after features, one feature each;
// else, when the body has one tensor, its columns in the profile's order
// (registry.CheckProfile refuses a profile that cannot be read that way
// from the version's signature). A deployment that logs no predictions
// (spec.predictionLog off) is not watched; what it logs (a sampled share)
// is what is counted. Records it cannot read are counted by reason.
//
// What to watch comes from a Syncer: each deployment's versions (spec.model
// and traffic targets, aliases resolved, and the versions that served it
// last) that have a profile in the registry (registry.SetProfile). A
// Monitor keeps a monitor.Window per deployment × version and reports
// them (Reports; the Collector exports them as metrics).
//
// In ebb up one process has it all: Syncer → Monitor ← Sink, and the admin
// API reads the Monitor. In a cluster the gateways see the traffic and the
// operator serves the API: the operator's Syncer feeds a Hub, each gateway
// polls the Hub for what to watch and ships its Monitor's windows to it
// (Remote), and the Hub sums them, since window counts are additive
// (monitor.Snapshot). Each shipment replaces the gateway's previous one
// whole, so a lost or repeated one is harmless.
//
// ReadSample builds a reference profile from a sample of training data,
// a CSV file or JSON lines, as `ebb models push --profile-data` does.
package drift
