package main

import (
	"os"
	"strconv"
	"time"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/spf13/pflag"
)

// upLimits are ebb up's hard limits beyond those of each listener.
type upLimits struct {
	limits             connlimit.Limits
	maxBodyBytes       int64
	maxRequestElements int64
	maxBufferedBytes   int64
	maxReplicasTotal   int
	modelRoots         []string
	maxModelBytes      int64
	pythons            []string
}

func addUpLimitFlags(f *pflag.FlagSet, l *upLimits) {
	connlimit.AddFlags(f, &l.limits)
	f.Int64Var(&l.maxBodyBytes, "max-body-bytes", gateway.DefaultMaxBodyBytes, "most bytes of one inference request body (more get 413, decided from Content-Length before reading) or gRPC request message (ResourceExhausted); the gateway and the replicas apply it")
	f.Int64Var(&l.maxRequestElements, "max-request-elements", server.DefaultMaxRequestElements, "most tensor elements one infer request may declare, all inputs together; replicas answer more with 413")
	f.Int64Var(&l.maxBufferedBytes, "max-buffered-bytes", gateway.DefaultMaxBufferedBytes, "most request body bytes the gateway holds across all requests in flight; beyond it requests get 503 with Retry-After")
	f.IntVar(&l.maxReplicasTotal, "max-replicas-total", 64, "most replicas (processes) of all deployments together on this host; a deployment held back says so in its status.reason (0: no cap)")
	f.StringSliceVar(&l.modelRoots, "model-roots", nil, "directories a deployment's model path must be under, besides the data dir (default: the current directory)")
	f.StringSliceVar(&l.pythons, "python-interpreters", api.DefaultPythonInterpreters, "Pythons a python deployment's spec.python.interpreter may name (a bare name is looked up in PATH); interpreters under the model roots, such as a virtualenv there, are allowed too")
	f.Int64Var(&l.maxModelBytes, "max-model-bytes", api.DefaultMaxModelBytes, "most bytes a model given by path may hold (a file, or the files of a directory)")
}

// check reports a limit flag out of its range.
func (l upLimits) check() error {
	return server.CheckMaxBodyBytes(l.maxBodyBytes)
}

// replicaArgs are the `ebb replica` flags that give every replica ebb up's
// limits: its read, body, write and idle timeouts (a replica must not cut
// an inference the gateway still waits for), --max-body-bytes (a replica
// must accept every body the gateway passes on) and --max-request-elements.
func (l upLimits) replicaArgs() []string {
	d := func(v time.Duration) string { return v.String() }
	return []string{
		"--read-header-timeout", d(l.limits.ReadHeaderTimeout),
		"--read-timeout", d(l.limits.ReadTimeout),
		"--body-timeout", d(l.limits.BodyTimeout),
		"--write-timeout", d(l.limits.WriteTimeout),
		"--idle-timeout", d(l.limits.IdleTimeout),
		"--max-body-bytes", strconv.FormatInt(l.maxBodyBytes, 10),
		"--max-request-elements", strconv.FormatInt(l.maxRequestElements, 10),
	}
}

// modelPaths returns the confinement of model paths: the data dir (where
// the demo writes its model) and --model-roots, by default the current
// directory (where the README's examples/ paths are).
func (l upLimits) modelPaths(dataDir string) api.ModelPaths {
	roots := append([]string{dataDir}, l.modelRoots...)
	if len(l.modelRoots) == 0 {
		if wd, err := os.Getwd(); err == nil {
			roots = append(roots, wd)
		}
	}
	return api.ModelPaths{Roots: roots, MaxBytes: l.maxModelBytes, Interpreters: l.pythons}
}
