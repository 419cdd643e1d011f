package apiclient_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/queue"
)

// The async calls against a real gateway are tested in cmd/ebb
// (TestAsyncCLI); here, what a gateway's answers become, and what the
// client sends.

const asyncID = "k7x2m4q5v3b5n2c6d2f4g7h3jq"

// seen is a request as the fake gateway saw it.
type seen struct {
	Method, URI, Tenant, Prefer string
}

// fakeGateway answers every request with status, headers (name, value
// pairs) and body, and records what it was sent.
func fakeGateway(t *testing.T, got *seen, status int, body string, headers ...string) *apiclient.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*got = seen{r.Method, r.URL.RequestURI(), r.Header.Get(apiclient.TenantHeader), r.Header.Get("Prefer")}
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return apiclient.New(srv.URL, srv.Client())
}

func TestAsyncGet(t *testing.T) {
	for _, tt := range []struct {
		name    string
		status  int
		body    string
		headers []string
		wait    time.Duration
		want    apiclient.AsyncResult
		prefer  string
		wantErr string // "" for none
		code    string // the *Error's code
	}{
		{name: "pending", status: 202, body: `{"id":"` + asyncID + `","state":"pending"}`,
			headers: []string{"Retry-After", "2", "Location", "/v2/async/" + asyncID, "Content-Type", "application/json"},
			want: apiclient.AsyncResult{Status: 202, AsyncStatus: apiclient.AsyncStatus{ID: asyncID, State: queue.Pending, Location: "/v2/async/" + asyncID},
				RetryAfter: 2 * time.Second, Body: []byte(`{"id":"` + asyncID + `","state":"pending"}`), ContentType: "application/json"}},
		{name: "wait rounds up to seconds", status: 202, body: `{"id":"` + asyncID + `","state":"pending"}`, wait: 1500 * time.Millisecond, prefer: "wait=2",
			want: apiclient.AsyncResult{Status: 202, AsyncStatus: apiclient.AsyncStatus{ID: asyncID, State: queue.Pending},
				Body: []byte(`{"id":"` + asyncID + `","state":"pending"}`), ContentType: "text/plain; charset=utf-8"}},
		{name: "done", status: 200, body: `{"error":"bad input"}`,
			headers: []string{"Ebb-Result-Status", "400", queue.HeaderID, asyncID, "Content-Type", "application/json"},
			want: apiclient.AsyncResult{Status: 200, AsyncStatus: apiclient.AsyncStatus{ID: asyncID, State: queue.Done},
				Body: []byte(`{"error":"bad input"}`), ContentType: "application/json", ResultStatus: 400}},
		{name: "cancelled is no error", status: 410, body: `{"id":"` + asyncID + `","state":"cancelled","code":"async/cancelled"}`,
			want: apiclient.AsyncResult{Status: 410, AsyncStatus: apiclient.AsyncStatus{ID: asyncID, State: queue.Cancelled, Code: "async/cancelled"},
				Body: []byte(`{"id":"` + asyncID + `","state":"cancelled","code":"async/cancelled"}`), ContentType: "text/plain; charset=utf-8"}},
		{name: "not found", status: 404, body: `{"error":"async request \"` + asyncID + `\" not found (unknown, expired, or not yours)","code":"async/not_found"}`,
			wantErr: "not found (unknown, expired, or not yours)", code: apiclient.CodeAsyncNotFound},
		{name: "done without a result status", status: 200, body: `{}`, wantErr: `answered 200 with Ebb-Result-Status "", not a status`},
		{name: "not a status body", status: 202, body: `<html>`, wantErr: `cannot decode the 202 answer`},
		{name: "async off", status: 404, body: "404 page not found", wantErr: "does not serve the async API (it answered 404 Not Found)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got seen
			c := fakeGateway(t, &got, tt.status, tt.body, tt.headers...)
			r, err := c.AsyncGet(context.Background(), asyncID, tt.wait)
			if tt.wantErr != "" {
				var e *apiclient.Error
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || (tt.code != "" && (!errors.As(err, &e) || e.Code != tt.code)) {
					t.Fatalf("AsyncGet = %+v, %v; want an error with %q, code %q", r, err, tt.wantErr, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, r); diff != "" {
				t.Errorf("AsyncGet (-want +got):\n%s", diff)
			}
			if want := (seen{"GET", "/v2/async/" + asyncID, "", tt.prefer}); got != want {
				t.Errorf("request = %+v, want %+v", got, want)
			}
		})
	}
}

func TestAsyncListAndCancel(t *testing.T) {
	ctx := context.Background()
	var got seen
	c := fakeGateway(t, &got, 200, `{"requests":null}`).WithTenant("acme")
	rs, err := c.AsyncList(ctx, apiclient.AsyncListOptions{Deployment: "m/x", State: "done", Limit: 5})
	if err != nil || rs == nil || len(rs) != 0 {
		t.Errorf("AsyncList = %#v, %v; want an empty list", rs, err)
	}
	if want := (seen{"GET", "/v2/async?deployment=m%2Fx&limit=5&state=done", "acme", ""}); got != want {
		t.Errorf("request = %+v, want %+v", got, want)
	}

	c = fakeGateway(t, &got, 400, `{"error":"state \"x\": want pending, done or cancelled","code":"async/bad_query"}`)
	_, err = c.AsyncList(ctx, apiclient.AsyncListOptions{State: "x"})
	var e *apiclient.Error
	if !errors.As(err, &e) || e.Code != apiclient.CodeAsyncBadQuery || e.Status != 400 {
		t.Errorf("AsyncList with a bad state = %v; want a 400 async/bad_query *Error", err)
	}

	c = fakeGateway(t, &got, 409, `{"error":"async request \"`+asyncID+`\" already finished (done): there is nothing to cancel","code":"async/finished"}`)
	_, err = c.AsyncCancel(ctx, asyncID)
	if !errors.As(err, &e) || e.Code != apiclient.CodeAsyncFinished || !strings.Contains(e.Message, "already finished") {
		t.Errorf("AsyncCancel of a finished request = %v; want an async/finished *Error", err)
	}
	if got.Method != http.MethodDelete || got.URI != "/v2/async/"+asyncID {
		t.Errorf("request = %+v, want DELETE /v2/async/%s", got, asyncID)
	}

	c = fakeGateway(t, &got, 405, "Method Not Allowed")
	if _, err = c.AsyncCancel(ctx, asyncID); err == nil || !strings.Contains(err.Error(), "does not serve the async API (it answered 405 Method Not Allowed)") {
		t.Errorf("AsyncCancel on a gateway without DELETE = %v; want it to say the server does not serve the call", err)
	}
}

// TestWithTenant: the tenant goes with the copy's requests only, and ""
// takes it off.
func TestWithTenant(t *testing.T) {
	ctx := context.Background()
	var got seen
	base := fakeGateway(t, &got, 200, `{"id":"`+asyncID+`","state":"cancelled"}`)
	acme := base.WithTenant("acme")
	for _, tt := range []struct {
		name string
		c    *apiclient.Client
		want string
	}{
		{"with tenant", acme, "acme"},
		{"original", base, ""},
		{"another copy", acme.WithTenant("globex"), "globex"},
		{"taken off", acme.WithTenant(""), ""},
		{"copy of copy", acme.WithToken("t"), "acme"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, err := tt.c.AsyncCancel(ctx, asyncID)
			if err != nil || st != (apiclient.AsyncStatus{ID: asyncID, State: queue.Cancelled}) {
				t.Fatalf("AsyncCancel = %+v, %v", st, err)
			}
			if got.Tenant != tt.want {
				t.Errorf("%s = %q, want %q", apiclient.TenantHeader, got.Tenant, tt.want)
			}
		})
	}
}
