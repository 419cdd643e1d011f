package s3_test

import (
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/artifact/artifacttest"
	"github.com/ebb-ml/ebb/internal/artifact/s3"
)

// TestConformance runs the suite against a real S3 server (versitygw).
func TestConformance(t *testing.T) {
	srv := artifacttest.StartS3Server(t)
	var stores []*s3.Store
	n := 0
	artifacttest.Run(t, artifacttest.Harness{
		New: func(t *testing.T) artifact.Store {
			// Each test gets its own prefix: an empty store in a shared
			// bucket.
			n++
			s, err := s3.New("s3://"+srv.Bucket+"/run"+strings.Repeat("x", n), s3.Options{
				Endpoint:  srv.Endpoint,
				AccessKey: srv.AccessKey,
				SecretKey: srv.SecretKey,
				TempDir:   t.TempDir(),
			})
			if err != nil {
				t.Fatal(err)
			}
			stores = append(stores, s)
			return s
		},
		Corrupt: func(t *testing.T, uri string) {
			key, err := stores[len(stores)-1].ObjectKey(uri)
			if err != nil {
				t.Fatal(err)
			}
			artifacttest.FlipByte(t, srv.ObjectPath(key))
		},
	})
}

func TestEnvironmentConfiguresTheClient(t *testing.T) {
	srv := artifacttest.StartS3Server(t)
	t.Setenv("EBB_S3_ENDPOINT", srv.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	s, err := s3.New("s3://"+srv.Bucket+"/env", s3.Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := s.Put(t.Context(), strings.NewReader("configured from the environment"))
	if err != nil {
		t.Fatalf("Put with endpoint and keys from the environment: %v", err)
	}
	if want := "s3://" + srv.Bucket + "/env/" + artifact.Key(ref.SHA256); ref.URI != want {
		t.Errorf("URI = %s, want %s", ref.URI, want)
	}

	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	bad, err := s3.New("s3://"+srv.Bucket+"/env", s3.Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Stat(t.Context(), ref.URI); err == nil {
		t.Error("Stat with a wrong secret key succeeded")
	}
}

func TestMissingBucketIsExplained(t *testing.T) {
	srv := artifacttest.StartS3Server(t)
	s, err := s3.New("s3://no-such-bucket/p", s3.Options{
		Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, TempDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Put(t.Context(), strings.NewReader("x"))
	if err == nil || !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) {
		t.Errorf("Put into a missing bucket: error %v, want one saying the bucket does not exist", err)
	}
}

func TestURIsOutsideTheStoreAreRefused(t *testing.T) {
	s, err := s3.New("s3://models/ebb", s3.Options{Endpoint: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	sum := strings.Repeat("ab", 32)
	for _, uri := range []string{
		"s3://other/ebb/" + artifact.Key(sum),
		"s3://models/elsewhere/" + artifact.Key(sum),
		"s3://models/ebbx/" + artifact.Key(sum),
		"file:///ebb/" + artifact.Key(sum),
	} {
		t.Run(uri, func(t *testing.T) {
			if _, err := s.ObjectKey(uri); err == nil {
				t.Errorf("ObjectKey(%s) succeeded, want an error", uri)
			}
		})
	}
	if key, err := s.ObjectKey("s3://models/ebb/" + artifact.Key(sum)); err != nil || key != "ebb/"+artifact.Key(sum) {
		t.Errorf("ObjectKey = %q, %v", key, err)
	}
}
