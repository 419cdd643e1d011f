package api

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Authorize returns next behind authentication and authorization: a request
// needs a token (auth.FromHeader) whose scopes allow what its route does
// (RouteAction). The principal travels in the request's context, where the
// deployment writes look for the exec scope (see checkExec). Refusals are
// 401 auth/unauthenticated with WWW-Authenticate: Bearer, and 403
// auth/forbidden naming the scope that is missing.
func Authorize(next http.Handler, a auth.Authenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := auth.FromHeader(r, a)
		if err == nil {
			err = auth.Check(p, RouteAction(r.Method, r.URL.Path), "")
		}
		if err != nil {
			auth.WriteError(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

// RouteAction is what a request to the admin API does, for authorization:
//
//	/v1/tokens...                      auth.Admin
//	GET, HEAD anything else            auth.Read
//	other methods on /v1/deployments…  auth.Deploy (and auth.Exec for a spec that runs code)
//	other methods on /v1/models…       auth.ModelsWrite
//	anything else                      auth.Admin
func RouteAction(method, path string) auth.Action {
	under := func(prefix string) bool { return path == prefix || strings.HasPrefix(path, prefix+"/") }
	switch {
	case under("/v1/tokens"):
		return auth.Admin
	case method == http.MethodGet || method == http.MethodHead:
		return auth.Read
	case under("/v1/deployments"):
		return auth.Deploy
	case under("/v1/models"):
		return auth.ModelsWrite
	}
	return auth.Admin
}

// RunsCode reports whether a deployment with spec s makes ebb run code of
// the user's: engine "python" (a class loaded into a Python worker) or
// engine "http" with a command. engine is s.Engine, or the engine of the
// registry version s names when s leaves it empty.
func RunsCode(s serving.Spec, engine string) bool {
	return engine == "python" || (engine == "http" && len(s.Command) > 0)
}

// codeChanged reports whether next changes what code runs compared to cur
// (zero for a new deployment), so that scaling a code-running deployment
// needs deploy alone but changing its code needs exec.
func codeChanged(cur, next serving.Spec) bool {
	return cur.Engine != next.Engine || cur.Model != next.Model ||
		!slices.Equal(cur.Command, next.Command) || !equalPython(cur.Python, next.Python) ||
		!slices.Equal(trafficModels(cur), trafficModels(next))
}

// trafficModels lists the models of s's traffic split: a new one runs code
// of its own, as a new spec.model would.
func trafficModels(s serving.Spec) []string {
	out := make([]string, 0, len(s.Traffic))
	for _, t := range s.Traffic {
		out = append(out, t.Model)
	}
	slices.Sort(out)
	return out
}

// equalPython compares what code a python spec runs: its class and
// interpreter. The worker count is capacity, not code.
func equalPython(a, b *serving.Python) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Class == b.Class && a.Interpreter == b.Interpreter
}

// checkExec refuses, with 403 auth/forbidden, a write whose spec runs code
// (RunsCode with engine) unless the request's principal may auth.Exec. A
// request that passed no auth stage (auth off, tests) is allowed.
func checkExec(ctx context.Context, s serving.Spec, engine string) error {
	if !RunsCode(s, engine) {
		return nil
	}
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil
	}
	return auth.Check(p, auth.Exec, "")
}

// checkSpecExec is checkExec for a write that turns cur into next; cur is
// zero for a create.
func checkSpecExec(ctx context.Context, cur, next serving.Spec) error {
	if !codeChanged(cur, next) {
		return nil
	}
	return checkExec(ctx, next, next.Engine)
}
