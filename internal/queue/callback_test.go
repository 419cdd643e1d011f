package queue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/queue"
)

func TestCallbackAllowed(t *testing.T) {
	allow := []string{"hooks.example", "*.acme.test", "127.0.0.1:8443"}
	for _, tc := range []struct {
		allow []string
		url   string
		ok    bool
	}{
		{allow, "https://hooks.example/ebb", true},
		{allow, "https://HOOKS.example:9000/ebb", true},
		{allow, "http://hooks.example/ebb", true},
		{allow, "https://a.acme.test/x", true},
		{allow, "https://a.b.acme.test/x", true},
		{allow, "https://acme.test/x", false},
		{allow, "https://evilacme.test/x", false},
		{allow, "https://127.0.0.1:8443/x", true},
		{allow, "https://127.0.0.1:8444/x", false},
		{allow, "https://127.0.0.1/x", false},
		{allow, "https://hooks.example.evil/x", false},
		{allow, "ftp://hooks.example/x", false},
		{allow, "https://user:pw@hooks.example/x", false},
		{allow, "/relative", false},
		{allow, "::not a url", false},
		{nil, "https://hooks.example/ebb", false},
	} {
		err := queue.CallbackAllowed(tc.allow, tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("CallbackAllowed(%q, %q) = %v, want allowed: %v", tc.allow, tc.url, err, tc.ok)
		}
		if err != nil && !errors.Is(err, queue.ErrCallbackNotAllowed) {
			t.Errorf("CallbackAllowed(%q) = %v, want ErrCallbackNotAllowed", tc.url, err)
		}
	}
}

func TestSignVerify(t *testing.T) {
	secret, id, body := []byte("s3cret"), queue.NewID(), []byte(`{"outputs":[]}`)
	now := time.Unix(1_750_000_000, 0)
	sig := queue.Sign(secret, now, id, 200, body)
	for _, tc := range []struct {
		name   string
		secret []byte
		header string
		id     string
		status int
		body   []byte
		at     time.Time
		ok     bool
	}{
		{"as signed", secret, sig, id, 200, body, now, true},
		{"a minute later", secret, sig, id, 200, body, now.Add(time.Minute), true},
		{"replayed an hour later", secret, sig, id, 200, body, now.Add(time.Hour), false},
		{"other secret", []byte("other"), sig, id, 200, body, now, false},
		{"body changed", secret, sig, id, 200, []byte(`{"outputs":[1]}`), now, false},
		{"status changed", secret, sig, id, 500, body, now, false},
		{"id changed", secret, sig, queue.NewID(), 200, body, now, false},
		{"no timestamp", secret, "v1=00", id, 200, body, now, false},
		{"empty", secret, "", id, 200, body, now, false},
	} {
		err := queue.Verify(tc.secret, tc.header, tc.id, tc.status, tc.body, tc.at, 5*time.Minute)
		if (err == nil) != tc.ok {
			t.Errorf("%s: Verify = %v, want ok: %v", tc.name, err, tc.ok)
		}
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := queue.NewID()
		if !queue.ValidID(id) || seen[id] {
			t.Fatalf("NewID() = %q: valid %v, seen before %v", id, queue.ValidID(id), seen[id])
		}
		seen[id] = true
	}
	for _, bad := range []string{"", "short", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxy1", "../../../../../../../../etc"} {
		if queue.ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}
