package pool

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// TooLargeError refuses a model bigger than a replica's whole memory
// budget: no eviction can make room for it.
type TooLargeError struct {
	Model string
	// Bytes is the model's measured size; Budget the replica's budget.
	Bytes, Budget int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("model %s needs %s (%d bytes, measured after load) but a replica of the pool has a memory budget of %s (%d bytes): raise the pool's memory budget or serve the model in a deployment of its own",
		e.Model, FormatBytes(e.Bytes), e.Bytes, FormatBytes(e.Budget), e.Budget)
}

// CheckFits returns a *TooLargeError when a model of the given measured
// size cannot fit in a replica's budget at all, for deploy-time
// validation; nil when it fits or its size is unknown (0).
func CheckFits(model string, bytes, budget int64) error {
	if bytes > 0 && bytes > budget {
		return &TooLargeError{Model: model, Bytes: bytes, Budget: budget}
	}
	return nil
}

// units are the suffixes ParseBytes accepts, with their multipliers.
var units = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	{"B", 1},
}

// ParseBytes reads a size such as "512MiB", "1.5Gi", "200MB" or "4096": a
// non-negative number with an optional binary (KiB, Ki, ...) or decimal
// (KB, K, ...) suffix, as Kubernetes quantities and people write them.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("size %q: give a non-negative number of bytes with an optional unit, e.g. 512MiB, 2Gi or 200MB", s)
	}
	b := v * float64(mult)
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(b), nil
}

// FormatBytes writes n in the largest binary unit that keeps it at least
// 1: "512 MiB", "1.5 GiB", "300 B".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for math.Abs(v) >= unit && i < 4 {
		v /= unit
		i++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + []string{"KiB", "MiB", "GiB", "TiB", "PiB"}[i]
}
