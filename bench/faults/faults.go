// Package faults is ebb's fault suite: each case starts `ebb up` through the
// bench harness, puts a steady, bounded load on it from loopback clients,
// injects one fault (a replica or ebb itself SIGKILLed, hostile clients,
// oversized bodies and shapes, abusive specs, a stalled store, the S3
// server down during a cold start, the apiserver of the test cluster
// restarted) and reports,
// as harness Goals, the failed requests, the peak RSS (VmHWM) of every ebb
// process, the time to recover and the processes and ports left behind.
//
// Cases implement harness.Scenario, so that the report reuses the bench's
// Result, Goal and Table types; Registry lists them in priority order.
// Every case bounds its load in requests and in time, talks only to
// 127.0.0.1, and ends only processes the harness started, by PID.
package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Registry returns the cases in priority order.
func Registry() (*harness.Registry, error) {
	r := &harness.Registry{}
	for _, c := range []harness.Scenario{
		KillOne{},
		KillAll{},
		KillEbb{},
		Connections{},
		Bodies{},
		Shapes{},
		ReplicaAbuse{},
		StoreStall{},
		S3Outage{},
		APIServerRestart{},
	} {
		if err := r.Register(c); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// NotDone lists the cases of the issue the suite does not run yet, with why.
var NotDone []string

// inferBody is a small OIP v2 request the echo engine answers.
var inferBody = []byte(`{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`)

func inferURL(b *harness.Ebb, deployment string) string {
	return b.URL + "/v2/models/" + deployment + "/infer"
}

// echoSpec is a deployment of the echo engine with fixed replica bounds
// that never scales to zero during a case.
func echoSpec(minR, maxR int32) serving.Spec {
	return harness.DeploymentSpec("echo", "", minR, maxR, time.Hour)
}

// ---- replicas ----

// replica is a ready replica of a deployment and its process.
type replica struct {
	ID, Endpoint string
	PID          int
}

// readyReplicas asks ebb for the deployment's ready replicas and each
// replica for its PID.
func readyReplicas(ctx context.Context, b *harness.Ebb, name string) ([]replica, error) {
	d, err := b.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	var out []replica
	for _, r := range d.Status.ReplicaStatuses {
		if r.State != serving.ReplicaReady || r.Endpoint == "" {
			continue
		}
		pid, err := replicaPID(ctx, r.Endpoint)
		if err != nil {
			return nil, fmt.Errorf("replica %s: %w", r.ID, err)
		}
		out = append(out, replica{ID: r.ID, Endpoint: r.Endpoint, PID: pid})
	}
	return out, nil
}

func replicaPID(ctx context.Context, endpoint string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/ebb/v1/replica", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var info struct {
		PID int `json:"pid"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &info); err != nil || info.PID == 0 {
		return 0, fmt.Errorf("no pid at %s/ebb/v1/replica (HTTP %d): %.200s", endpoint, resp.StatusCode, b)
	}
	return info.PID, nil
}

// hostPort returns the host:port of a URL such as http://127.0.0.1:1234.
func hostPort(endpoint string) string {
	_, hp, _ := strings.Cut(endpoint, "://")
	hp, _, _ = strings.Cut(hp, "/")
	return hp
}

// watchReplicas tells m about the deployment's ready replicas.
func watchReplicas(ctx context.Context, m *Monitor, b *harness.Ebb, name string) []replica {
	rs, _ := readyReplicas(ctx, b, name)
	for _, r := range rs {
		m.WatchPID(r.PID, hostPort(r.Endpoint))
	}
	return rs
}

// waitReplicas polls until the deployment has n ready replicas whose PIDs
// answer, watching them in m; it returns when that happened.
func waitReplicas(ctx context.Context, m *Monitor, b *harness.Ebb, name string, n int, timeout time.Duration) ([]replica, time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		rs, err := readyReplicas(ctx, b, name)
		if err == nil && len(rs) >= n {
			for _, r := range rs {
				m.WatchPID(r.PID, hostPort(r.Endpoint))
			}
			return rs, time.Now(), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return rs, time.Time{}, fmt.Errorf("deployment %s has %d of %d ready replicas after %s (last error: %v)", name, len(rs), n, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---- goals ----

func goal(name, target string, value float64, unit string, met bool, detail string) harness.Goal {
	return harness.Goal{Name: name, Target: target, Ebb: value, Unit: unit, Met: met, Detail: detail}
}

// leftoverGoal stops every process of the case, then checks that none of
// ebb's processes or ports is left.
func leftoverGoal(env *harness.Env, m *Monitor) (harness.Goal, []string) {
	stopped := env.StopAll()
	m.Stop()
	left := append(stopped, m.Leftovers()...)
	detail := "every ebb process ended and every port it listened on is closed"
	if len(left) > 0 {
		detail = strings.Join(left, "; ")
	}
	return goal("nothing left behind", "0 processes or ports", float64(len(left)), "leftovers", len(left) == 0, detail), left
}

// rssGoal checks a peak RSS against a bound.
func rssGoal(name string, peak, bound int64, why string) harness.Goal {
	return goal(name, fmt.Sprintf("≤ %.0f MiB (%s)", harness.MiB(bound), why), harness.MiB(peak), "MiB", peak > 0 && peak <= bound,
		fmt.Sprintf("peak VmHWM %.1f MiB, bound %.0f MiB", harness.MiB(peak), harness.MiB(bound)))
}

// rssFigures puts the peaks into the result's figures and tables.
func rssFigures(res *harness.Result, m *Monitor) {
	up, rep, nUp, nRep := m.Peaks()
	if res.Figures == nil {
		res.Figures = map[string]float64{}
	}
	res.Figures["rss.ebbUp.peakMiB"] = harness.MiB(up)
	res.Figures["rss.replica.peakMiB"] = harness.MiB(rep)
	res.Figures["processes.ebbUp"] = float64(nUp)
	res.Figures["processes.replica"] = float64(nRep)
	res.Tables = append(res.Tables, m.Table())
}

func secs(d time.Duration) float64 { return d.Seconds() }
