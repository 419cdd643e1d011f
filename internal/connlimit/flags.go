package connlimit

import "github.com/spf13/pflag"

// AddFlags adds the flags of Limits to f, with this package's defaults:
// --read-header-timeout, --read-timeout, --body-timeout, --write-timeout,
// --idle-timeout and --max-conns. Every ebb server (ebb up, the gateway,
// the operator, a replica) takes them under these names.
func AddFlags(f *pflag.FlagSet, l *Limits) {
	f.DurationVar(&l.ReadHeaderTimeout, "read-header-timeout", DefaultReadHeaderTimeout, "longest a client may take to send a request's headers (negative: no limit)")
	f.DurationVar(&l.ReadTimeout, "read-timeout", DefaultReadTimeout, "longest a client may take to send a whole request, body included (a model push must arrive within it; negative: no limit)")
	f.DurationVar(&l.BodyTimeout, "body-timeout", DefaultBodyTimeout, "longest a client may take to send an inference request body (negative: no limit)")
	f.DurationVar(&l.WriteTimeout, "write-timeout", DefaultWriteTimeout, "longest a response may take to be written; must exceed the longest inference answer (negative: no limit)")
	f.DurationVar(&l.IdleTimeout, "idle-timeout", DefaultIdleTimeout, "how long an idle keep-alive connection (HTTP or gRPC) stays open (negative: no limit)")
	f.IntVar(&l.MaxConns, "max-conns", DefaultMaxConns, "most connections open at once per listener; more wait to be accepted (negative: no limit)")
}
