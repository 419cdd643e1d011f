package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/queue"
)

// Async inference requests: `ebb async get|list|cancel`, over the
// gateway's /v2/async (docs/async.md).

// asyncMaxWait is the longest one GET waits at the gateway
// (gateway.DefaultAsyncMaxWait); --wait beyond it asks again.
const asyncMaxWait = 30 * time.Second

// asyncMaxList is the most requests one list returns (the gateway's
// bound).
const asyncMaxList = 1000

func newAsyncCmd() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "async",
		Short: "Follow, list and cancel async inference requests (Prefer: respond-async)",
		Long: `An infer request sent with "Prefer: respond-async" is stored durably and
answered 202 Accepted with its id; the gateway's worker runs it at the pace
the deployment takes and keeps its result for a day (docs/async.md). These
commands read a request's result (get), list requests (list) and cancel them
(cancel), through the gateway: --server is ebb up's address, where predict
and infer requests go.

A request is its tenant's, and another tenant's id is answered as an
unknown one. With auth off (ebb up on loopback, by default) the tenant is the
one the request named in its Ebb-Tenant header: give the same with --tenant
(none names the anonymous tenant, as a request without the header). With
auth on the token's tenant counts and --tenant changes nothing.`,
		Example: `  ebb async list
  ebb async list --deployment sessions --state pending
  ebb async get k7x2m4q5v3b5n2c6d2f4g7h3jq --wait 30s
  ebb async get k7x2m4q5v3b5n2c6d2f4g7h3jq -o json
  ebb async cancel k7x2m4q5v3b5n2c6d2f4g7h3jq --tenant acme`,
	}
	addServerFlag(cmd)
	cmd.PersistentFlags().StringVar(&tenant, "tenant", "", "the tenant the requests are of, sent as the Ebb-Tenant header to a gateway with auth off (with auth on the token's tenant counts)")
	client := func(cmd *cobra.Command) (*apiclient.Client, error) {
		if tenant != "" {
			if err := auth.ValidateTenant(tenant); err != nil {
				return nil, fmt.Errorf("--tenant %w", err)
			}
		}
		return newAPIClient(cmd).WithTenant(tenant), nil
	}
	cmd.AddCommand(newAsyncGetCmd(client), newAsyncListCmd(client), newAsyncCancelCmd(client))
	return cmd
}

// asyncClientFunc returns the client of an async command, with --tenant.
type asyncClientFunc func(*cobra.Command) (*apiclient.Client, error)

// asyncID reads an async request id, or the Location path that holds it
// (/v2/async/ID).
func asyncID(arg string) (string, error) {
	id := strings.TrimPrefix(arg, "/v2/async/")
	if !queue.ValidID(id) {
		return "", fmt.Errorf("%q is not an async request id: give the id of the 202 answer (26 characters, a-z and 2-7), or its Location, /v2/async/ID", arg)
	}
	return id, nil
}

func newAsyncGetCmd(client asyncClientFunc) *cobra.Command {
	var (
		wait   time.Duration
		output string
	)
	cmd := &cobra.Command{
		Use:   "get ID [--wait DURATION] [-o table|json|yaml]",
		Short: "Print an async request's result, or its state while it has none",
		Long: `Get prints the request's result once it has one: the model's answer (JSON
indented). A request still pending prints so and exits 0; --wait waits up to
that long for its result first (the gateway answers as soon as it is
stored). Get exits non-zero when the request was cancelled, or when the
model answered its request with a status other than 2xx (the answer is
printed, and the status named on standard error).

-o json (or yaml) prints the state as the gateway answered it: id, state and
location while pending; once done, the result's status, content type and
body (under "result" when it is JSON, "resultText" when it is other text,
"resultBase64" otherwise).`,
		Example: `  ebb async get k7x2m4q5v3b5n2c6d2f4g7h3jq
  ebb async get k7x2m4q5v3b5n2c6d2f4g7h3jq --wait 2m
  ebb async get /v2/async/k7x2m4q5v3b5n2c6d2f4g7h3jq -o json --tenant acme`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if wait < 0 {
				return fmt.Errorf("--wait %s is negative: give how long to wait for the result, such as 10s", wait)
			}
			id, err := asyncID(args[0])
			if err != nil {
				return err
			}
			c, err := client(cmd)
			if err != nil {
				return err
			}
			r, err := asyncAwait(cmd, c, id, wait)
			if err != nil {
				return asyncNotFoundHint(err)
			}
			w := cmd.OutOrStdout()
			if output != outputTable {
				if err := writeOutput(w, output, asyncGetView(r), nil); err != nil {
					return err
				}
			} else if r.Done() {
				if _, err := w.Write(resultText(r.Body)); err != nil {
					return err
				}
			}
			switch r.State {
			case queue.Done:
				if r.ResultStatus < 200 || r.ResultStatus > 299 {
					return fmt.Errorf("async request %q is done, but the model answered %d %s (its answer is above)", r.ID, r.ResultStatus, http.StatusText(r.ResultStatus))
				}
				return nil
			case queue.Cancelled:
				return fmt.Errorf("async request %q was cancelled: it has no result", r.ID)
			}
			if output != outputTable {
				return nil
			}
			hint := "wait for it with --wait 30s"
			if wait > 0 {
				hint = fmt.Sprintf("no result within %s; wait longer with --wait", wait)
			}
			_, err = fmt.Fprintf(w, "async request %q is %s: no result yet (%s)\n", r.ID, r.State, hint)
			return err
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for the result (such as 30s, 5m; 0: do not wait)")
	addOutputFlag(cmd, &output)
	return cmd
}

// asyncAwait reads request id, waiting up to wait for its result: asking
// the gateway to wait (at most asyncMaxWait a call) until it has it or
// wait passed.
func asyncAwait(cmd *cobra.Command, c *apiclient.Client, id string, wait time.Duration) (apiclient.AsyncResult, error) {
	ctx := cmd.Context()
	deadline := time.Now().Add(wait)
	for {
		left := time.Until(deadline)
		start := time.Now()
		r, err := c.AsyncGet(ctx, id, min(left, asyncMaxWait))
		if err != nil || r.State != queue.Pending || wait <= 0 {
			return r, err
		}
		if left = time.Until(deadline); left <= 0 {
			return r, nil
		}
		// A gateway that answered at once did not wait (an older one):
		// poll as it suggests rather than in a tight loop.
		if pause := max(r.RetryAfter, time.Second) - time.Since(start); pause > 0 {
			select {
			case <-time.After(min(pause, left)):
			case <-ctx.Done():
				return r, ctx.Err()
			}
		}
	}
}

// asyncNotFoundHint adds to a not-found error where else the request may
// be: under another tenant.
func asyncNotFoundHint(err error) error {
	var e *apiclient.Error
	if errors.As(err, &e) && e.Code == apiclient.CodeAsyncNotFound {
		return fmt.Errorf("%w: only its own tenant finds a request; with auth off, pass the tenant its Ebb-Tenant header named with --tenant", err)
	}
	return err
}

// asyncView is what -o json prints of a GET's answer.
type asyncView struct {
	ID       string      `json:"id"`
	State    queue.State `json:"state"`
	Location string      `json:"location,omitempty"`
	Code     string      `json:"code,omitempty"`
	// Once done: the result.
	ResultStatus int             `json:"resultStatus,omitempty"`
	ContentType  string          `json:"contentType,omitempty"`
	Result       json.RawMessage `json:"result,omitempty"`
	ResultText   string          `json:"resultText,omitempty"`
	ResultBase64 []byte          `json:"resultBase64,omitempty"`
}

func asyncGetView(r apiclient.AsyncResult) asyncView {
	v := asyncView{ID: r.ID, State: r.State, Location: r.Location, Code: r.Code}
	if !r.Done() {
		return v
	}
	v.ResultStatus, v.ContentType = r.ResultStatus, r.ContentType
	switch body := bytes.TrimSpace(r.Body); {
	case json.Valid(body) && len(body) > 0:
		v.Result = body
	case isText(r.Body):
		v.ResultText = string(r.Body)
	default:
		v.ResultBase64 = r.Body
	}
	return v
}

// resultText is an answer's body to print (ebb predict's, an async
// result's): JSON indented; anything else as it came, ending in a newline
// when text.
func resultText(body []byte) []byte {
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err == nil {
		out.WriteByte('\n')
		return out.Bytes()
	}
	if len(body) > 0 && body[len(body)-1] != '\n' && isText(body) {
		return append(bytes.Clone(body), '\n')
	}
	return body
}

// isText reports whether b reads as text: UTF-8 without NUL bytes.
func isText(b []byte) bool { return utf8.Valid(b) && !bytes.ContainsRune(b, 0) }

func newAsyncListCmd(client asyncClientFunc) *cobra.Command {
	var (
		opts   apiclient.AsyncListOptions
		output string
	)
	cmd := &cobra.Command{
		Use:     "list [--deployment D] [--state pending|done|cancelled] [--limit N]",
		Aliases: []string{"ls"},
		Short:   "List async requests, newest first, without their results",
		Long: `List shows the tenant's async requests, newest first: their deployment,
state, the status the model answered once done, and how many times they
were run. A request is listed until its result expires (a day after it was
done, by default). With auth on, only the requests of deployments the token
may predict on are listed. -o json prints each request's whole record,
callback delivery included.`,
		Example: `  ebb async list
  ebb async list --deployment sessions --state done --limit 10
  ebb async list --tenant acme -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			switch queue.State(opts.State) {
			case "", queue.Pending, queue.Done, queue.Cancelled:
			default:
				return fmt.Errorf("--state %q: want pending, done or cancelled", opts.State)
			}
			if opts.Limit < 1 || opts.Limit > asyncMaxList {
				return fmt.Errorf("--limit %d: want a number from 1 to %d", opts.Limit, asyncMaxList)
			}
			c, err := client(cmd)
			if err != nil {
				return err
			}
			rs, err := c.AsyncList(cmd.Context(), opts)
			if err != nil {
				return err
			}
			now := time.Now()
			return writeOutput(cmd.OutOrStdout(), output, queue.RecordList{Requests: rs}, func(w io.Writer) error {
				if len(rs) == 0 {
					msg := "No async requests."
					if opts.Deployment != "" || opts.State != "" {
						msg = "No async requests match."
					}
					_, err := fmt.Fprintln(w, msg)
					return err
				}
				rows := make([][]string, len(rs))
				for i, r := range rs {
					result := "-"
					if r.ResultStatus != 0 {
						result = strconv.Itoa(r.ResultStatus)
					}
					rows[i] = []string{r.ID, r.Deployment, string(r.State), result, strconv.Itoa(r.Attempts), age(now, r.CreatedAt)}
				}
				return writeRows(w, []string{"ID", "DEPLOYMENT", "STATE", "RESULT", "ATTEMPTS", "AGE"}, rows)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Deployment, "deployment", "", "list only the requests to this deployment (or route object)")
	f.StringVar(&opts.State, "state", "", "list only the requests in this state: pending, done or cancelled")
	f.IntVar(&opts.Limit, "limit", 100, fmt.Sprintf("list at most this many requests, the newest (1 to %d)", asyncMaxList))
	addOutputFlag(cmd, &output)
	return cmd
}

func newAsyncCancelCmd(client asyncClientFunc) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel an async request: one not run yet will not run; one running has its result dropped",
		Long: `Cancel stops an async request: one not run yet will not run, and one
running has its result dropped. Getting it then answers that it was
cancelled. A request that already has a result, or was cancelled, cannot
be: cancel says it already finished and exits non-zero.`,
		Example: `  ebb async cancel k7x2m4q5v3b5n2c6d2f4g7h3jq
  ebb async cancel k7x2m4q5v3b5n2c6d2f4g7h3jq --tenant acme`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := asyncID(args[0])
			if err != nil {
				return err
			}
			c, err := client(cmd)
			if err != nil {
				return err
			}
			if _, err := c.AsyncCancel(cmd.Context(), id); err != nil {
				var e *apiclient.Error
				if errors.As(err, &e) && e.Code == apiclient.CodeAsyncFinished {
					return fmt.Errorf("%w; see it with `ebb async get %s`", err, id)
				}
				return asyncNotFoundHint(err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "async request %q cancelled\n", id)
			return err
		},
	}
}
