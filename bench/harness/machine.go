package harness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine describes the host the benchmarks ran on.
type Machine struct {
	CPUModel string `json:"cpuModel"`
	NProc    int    `json:"nproc"`
	MemBytes int64  `json:"memBytes"`
	Kernel   string `json:"kernel"`
	OS       string `json:"os"`
}

// DescribeMachine reads the CPU model and memory from /proc; nproc is the
// number of CPUs the run may use (the harness itself may be pinned to
// fewer).
func DescribeMachine(nproc int) Machine {
	m := Machine{NProc: nproc}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				f := strings.Fields(v)
				if len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					m.MemBytes = kb * 1024
				}
			}
		}
	}
	m.Kernel = strings.TrimSpace(cmdOut("uname", "-r"))
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	return m
}

// cmdOut runs a short command and returns its combined output ("" on
// failure to start).
func cmdOut(name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out)
}

func firstMatch(re, s string) string {
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if len(m) < 2 {
		return strings.TrimSpace(firstLine(s))
	}
	return m[1]
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// Versions returns the versions of ebb (its commit), Go and every peer and
// tool the scenarios use.
func Versions(root, python string) []KV {
	commit := strings.TrimSpace(cmdOut("git", "-C", root, "rev-parse", "--short=12", "HEAD"))
	if strings.Contains(commit, " ") || commit == "" {
		commit = "unknown (not a git checkout)"
	} else if strings.TrimSpace(cmdOut("git", "-C", root, "status", "--porcelain", "--untracked-files=no")) != "" {
		commit += " (with uncommitted changes)"
	}
	py := func(mod string) string {
		return firstLine(cmdOut(python, "-c", fmt.Sprintf("import %s; print(%s.__version__)", mod, mod)))
	}
	return []KV{
		{"ebb commit", commit},
		{"Go", runtime.Version()},
		{"nginx", firstMatch(`nginx/(\S+)`, cmdOut("nginx", "-v"))},
		{"HAProxy", firstMatch(`version (\S+)`, cmdOut("haproxy", "-v"))},
		{"wrk", firstMatch(`wrk (\S+)`, cmdOut("wrk", "-v"))},
		{"Python", firstMatch(`Python (\S+)`, cmdOut(python, "--version")) + " (" + python + ")"},
		{"xgboost", py("xgboost")},
		{"numpy", py("numpy")},
		{"Flask", py("flask")},
		{"gunicorn", py("gunicorn")},
		{"FastAPI", py("fastapi")},
		{"uvicorn", py("uvicorn")},
		{"uvloop", py("uvloop")},
		{"httptools", py("httptools")},
	}
}
