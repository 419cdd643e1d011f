package artifacttest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// VersityGWVersion is the versitygw release hack/install-versitygw.sh
// builds.
const VersityGWVersion = "v1.8.0"

// S3Server is a real S3-compatible server started for one test.
type S3Server struct {
	// Endpoint is "http://127.0.0.1:port".
	Endpoint  string
	AccessKey string
	SecretKey string
	// Bucket exists and is empty when StartS3Server returns.
	Bucket string
	// Root is the posix backend's directory: object key k of bucket b is
	// the file Root/b/k.
	Root string
}

// ObjectPath returns the file that holds key in the server's bucket.
func (s *S3Server) ObjectPath(key string) string {
	return filepath.Join(s.Root, s.Bucket, filepath.FromSlash(key))
}

// VersityGWPath returns the versitygw binary: $EBB_VERSITYGW, else the one
// hack/install-versitygw.sh leaves in its cache, else versitygw on PATH.
func VersityGWPath() (string, bool) {
	if p := os.Getenv("EBB_VERSITYGW"); p != "" {
		fi, err := os.Stat(p)
		return p, err == nil && fi.Mode()&0o111 != 0
	}
	tools := os.Getenv("EBB_TOOLS_DIR")
	if tools == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			if home, err := os.UserHomeDir(); err == nil {
				cache = filepath.Join(home, ".cache")
			}
		}
		tools = filepath.Join(cache, "ebb", "tools")
	}
	p := filepath.Join(tools, "versitygw-"+VersityGWVersion, "versitygw")
	if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
		return p, true
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, true
	}
	return "", false
}

// StartS3Server starts versitygw with a posix backend in a temporary
// directory on a free 127.0.0.1 port, creates a bucket, and stops the
// server (by its PID) when the test ends. Without versitygw installed the
// test is skipped, or fails when $CI is "true".
func StartS3Server(t *testing.T) *S3Server {
	t.Helper()
	bin, ok := VersityGWPath()
	if !ok {
		msg := "versitygw is not installed; run hack/install-versitygw.sh (or set EBB_VERSITYGW to the binary)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	s := &S3Server{
		AccessKey: "ebbtestaccess",
		SecretKey: "ebbtestsecret0123456789",
		Bucket:    "artifacts",
		Root:      t.TempDir(),
	}
	var lastErr error
	for range 3 { // a free port can be taken between probe and bind
		addr, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		if lastErr = s.start(t, bin, addr); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("starting versitygw: %v", lastErr)
	}
	client, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("creating bucket %s: %v", s.Bucket, err)
	}
	return s
}

// Client returns a minio client for the server.
func (s *S3Server) Client() (*minio.Client, error) {
	return minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
	})
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// start runs the server on addr and waits until it answers HTTP.
func (s *S3Server) start(t *testing.T, bin, addr string) error {
	logPath := filepath.Join(t.TempDir(), "versitygw.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(bin,
		"--port", addr,
		"--access", s.AccessKey,
		"--secret", s.SecretKey,
		"--quiet",
		"posix", s.Root)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	s.Endpoint = "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			t.Cleanup(stop)
			return nil
		}
		select {
		case werr := <-exited:
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("versitygw exited (%v): %s", werr, out)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			stop()
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("versitygw did not answer on %s within 20s: %s", addr, out)
		}
	}
}
