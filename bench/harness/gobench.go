package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// GoBench is one benchmark's result from `go test -bench`.
type GoBench struct {
	Name        string // without the "Benchmark" prefix and the -CPUS suffix
	N           int64
	NsPerOp     float64
	BytesPerOp  float64
	AllocsPerOp float64
}

// GoBenchmarks compiles the tests of pkg (a path below Root, such as
// ./internal/gateway) and runs its benchmarks matching pattern, benchtime
// each (as -benchtime takes it: "2000x", "1s"), pinned to the server CPUs
// since they measure server work. The run is bounded by timeout.
func (e *Env) GoBenchmarks(ctx context.Context, pkg, pattern, benchtime string, timeout time.Duration) ([]GoBench, error) {
	bin := filepath.Join(e.Work, strings.ReplaceAll(strings.Trim(pkg, "./"), "/", "-")+".test")
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, pkg)
	build.Dir = e.Root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go test -c %s: %w: %s", pkg, err, out)
	}
	argv := []string{bin, "-test.run", "^$", "-test.bench", pattern, "-test.benchtime", benchtime, "-test.benchmem"}
	if e.ServerCPUs != "" {
		argv = append([]string{"taskset", "-c", e.ServerCPUs}, argv...)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = filepath.Join(e.Root, pkg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("benchmarks of %s: %w: %s", pkg, err, out)
	}
	return parseGoBench(out), nil
}

// parseGoBench reads the result lines of `go test -bench -benchmem`:
//
//	BenchmarkStageAuth-2   2000   264.5 ns/op   96 B/op   1 allocs/op
func parseGoBench(out []byte) []GoBench {
	var res []GoBench
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		b := GoBench{Name: name}
		b.N, _ = strconv.ParseInt(f[1], 10, 64)
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				b.NsPerOp = v
			case "B/op":
				b.BytesPerOp = v
			case "allocs/op":
				b.AllocsPerOp = v
			}
		}
		res = append(res, b)
	}
	return res
}
