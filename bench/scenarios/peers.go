// Package scenarios holds the benchmarks of issue 3 (proxy overhead, one
// real model against Python microservices, scale from zero and routing
// scale), each a harness.Scenario, and the peers they run: nginx, HAProxy,
// Flask under gunicorn and FastAPI under uvicorn.
package scenarios

import (
	"context"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
)

//go:embed python/*.py
var pythonFiles embed.FS

// serverCPUCount is how many CPUs the server list names (for nginx worker
// processes and HAProxy threads), 1 when unknown.
func serverCPUCount(env *harness.Env) int {
	if env.ServerCPUs == "" {
		return max(1, env.LoadThreads)
	}
	n := 0
	for _, part := range strings.Split(env.ServerCPUs, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || b < a {
			return 1
		}
		n += b - a + 1
	}
	return max(1, n)
}

// startNginx starts nginx in the foreground as a reverse proxy to
// upstream (host:port) with kept-alive upstream connections, and returns
// its base URL.
func startNginx(ctx context.Context, env *harness.Env, upstream string) (string, *harness.Proc, error) {
	port, err := harness.FreePort()
	if err != nil {
		return "", nil, err
	}
	dir := filepath.Join(env.Work, "nginx")
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return "", nil, err
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n"
	}
	conf := fmt.Sprintf(`%sworker_processes %d;
daemon off;
pid %[3]s/nginx.pid;
error_log %[3]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[3]s/tmp/body;
  proxy_temp_path %[3]s/tmp/proxy;
  fastcgi_temp_path %[3]s/tmp/fastcgi;
  uwsgi_temp_path %[3]s/tmp/uwsgi;
  scgi_temp_path %[3]s/tmp/scgi;
  keepalive_requests 1000000;
  upstream backend {
    server %[4]s;
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:%[5]d;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`, user, serverCPUCount(env), dir, upstream, port)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return "", nil, err
	}
	p, err := env.Start(harness.StartOptions{Name: "nginx", Dir: dir}, "nginx", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path)
	if err != nil {
		return "", nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	return url, p, harness.WaitHTTP(ctx, p, url+"/v2/health/ready", 15*time.Second)
}

// startHAProxy starts HAProxy in the foreground (-db) in HTTP mode with
// connection reuse to upstream, and returns its base URL.
func startHAProxy(ctx context.Context, env *harness.Env, upstream string) (string, *harness.Proc, error) {
	port, err := harness.FreePort()
	if err != nil {
		return "", nil, err
	}
	dir := filepath.Join(env.Work, "haproxy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	conf := fmt.Sprintf(`global
  nbthread %d
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:%d
  default_backend be
backend be
  server s1 %s maxconn 1024
`, serverCPUCount(env), port, upstream)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return "", nil, err
	}
	p, err := env.Start(harness.StartOptions{Name: "haproxy", Dir: dir}, "haproxy", "-db", "-f", path)
	if err != nil {
		return "", nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	return url, p, harness.WaitHTTP(ctx, p, url+"/v2/health/ready", 15*time.Second)
}

// writePython writes the embedded Python peers to Work/python once.
func writePython(env *harness.Env) (string, error) {
	dir := filepath.Join(env.Work, "python")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	entries, err := pythonFiles.ReadDir("python")
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		b, err := pythonFiles.ReadFile("python/" + e.Name())
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// pyServer is one Python peer.
type pyServer struct {
	name string
	argv func(python, dir string, port, workers int) []string
}

var pyServers = []pyServer{
	{
		name: "Flask+gunicorn",
		argv: func(python, dir string, port, workers int) []string {
			return []string{python, "-m", "gunicorn", "--workers", strconv.Itoa(workers), "--bind", fmt.Sprintf("127.0.0.1:%d", port),
				"--chdir", dir, "--log-level", "warning", "flask_app:app"}
		},
	},
	{
		name: "FastAPI+uvicorn",
		argv: func(python, dir string, port, workers int) []string {
			return []string{python, "-m", "uvicorn", "--host", "127.0.0.1", "--port", strconv.Itoa(port), "--workers", strconv.Itoa(workers),
				"--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning", "--app-dir", dir, "fastapi_app:app"}
		},
	},
}

// startPython starts a Python peer serving model with one worker per
// server CPU and returns its base URL. ready bounds the wait.
func startPython(ctx context.Context, env *harness.Env, s pyServer, model string, ready time.Duration) (string, *harness.Proc, error) {
	dir, err := writePython(env)
	if err != nil {
		return "", nil, err
	}
	port, err := harness.FreePort()
	if err != nil {
		return "", nil, err
	}
	p, err := env.Start(harness.StartOptions{
		Name: s.name,
		Dir:  dir,
		Env:  []string{"EBB_BENCH_MODEL=" + model, "OMP_NUM_THREADS=1", "PYTHONDONTWRITEBYTECODE=1"},
	}, s.argv(env.Python, dir, port, serverCPUCount(env))...)
	if err != nil {
		return "", nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	return url, p, harness.WaitHTTP(ctx, p, url+"/v2/health/ready", ready)
}
