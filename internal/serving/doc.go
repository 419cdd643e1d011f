// Package serving defines ebb's domain types: a Deployment with its Spec and
// Status, the scaling policy, and their validation and defaults. It does no
// I/O; every other package speaks in these types.
package serving
