// Package hostile runs ebb's processes against the hostile inputs of
// issue 10 and checks that they answer with a clear 4xx and stay small.
package hostile

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/ebbtest"
)

var ebb string

func TestMain(m *testing.M) { ebbtest.Main(m, &ebb) }

// startReplica runs `ebb replica` with the echo engine and args, and
// returns its base URL and PID once it is ready.
func startReplica(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, ebb, append([]string{"replica", "--deployment", "m", "--engine", "echo", "--addr", addr}, args...)...)
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, cmd.Process.Pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not ready at %s: %v", base, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// peakRSS returns the process's peak resident set (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// TestHugeDeclaredShape is issue 10's 80-byte request that took 17 GB: a
// shape of [214748364, 10] with one element. The replica refuses it, by
// the element cap or, with the cap lifted, by the data it received, and its
// peak RSS stays small.
func TestHugeDeclaredShape(t *testing.T) {
	const hostile = `{"inputs":[{"name":"input","shape":[214748364,10],"datatype":"FP64","data":[0.0]}]}`
	tests := []struct {
		name    string
		args    []string
		want    int
		wantMsg string
	}{
		{name: "element cap", want: http.StatusRequestEntityTooLarge, wantMsg: "more than the limit of 67108864"},
		{name: "cap lifted: bounded by the bytes received", args: []string{"--max-request-elements", "100000000000"}, want: http.StatusBadRequest, wantMsg: "holds 2147483640 elements but data has 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, pid := startReplica(t, tt.args...)
			before := peakRSS(t, pid)
			for range 3 {
				resp, err := http.Post(base+"/v2/models/m/infer", "application/json", strings.NewReader(hostile))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.want || !strings.Contains(string(b), tt.wantMsg) {
					t.Fatalf("got %d %s; want %d with %q", resp.StatusCode, b, tt.want, tt.wantMsg)
				}
			}
			// A working replica still answers.
			resp, err := http.Post(base+"/v2/models/m/infer", "application/json", strings.NewReader(`{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("a valid request after the hostile ones: %d", resp.StatusCode)
			}
			// Unbounded, the peak grew by 16 GiB.
			if after := peakRSS(t, pid); after-before > 32<<20 {
				t.Errorf("replica peak RSS grew from %d to %d MiB; want it bounded by the bytes received", before>>20, after>>20)
			} else {
				t.Logf("replica peak RSS %d MiB before, %d MiB after", before>>20, after>>20)
			}
		})
	}
}

// TestReplicaContentLength is 413 from Content-Length at the replica,
// before a byte of the body is read.
func TestReplicaContentLength(t *testing.T) {
	base, _ := startReplica(t)
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", int64(1)<<40)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer before the body: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "larger than the limit") {
		t.Errorf("got %d %s; want 413", resp.StatusCode, b)
	}
}
