package api

import (
	"context"
	"errors"
	"fmt"
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
//	other methods on /v1/deployments…  auth.Deploy (and auth.Exec for a spec that runs code: checkSpecExec)
//	other methods on /v1/routes…       auth.Deploy
//	other methods on /v1/jobs…         auth.Deploy (and auth.Exec for a job whose own deployment runs code)
//	other methods on /v1/models…       auth.ModelsWrite (and auth.Exec to push python: checkPushExec)
//	other methods on /v1/limits…       auth.Admin (tenant limits)
//	anything else                      auth.Admin
func RouteAction(method, path string) auth.Action {
	under := func(prefix string) bool { return path == prefix || strings.HasPrefix(path, prefix+"/") }
	switch {
	case under("/v1/tokens"):
		return auth.Admin
	case method == http.MethodGet || method == http.MethodHead:
		return auth.Read
	case under("/v1/deployments"), under("/v1/routes"), under("/v1/jobs"):
		return auth.Deploy
	case under("/v1/models"):
		return auth.ModelsWrite
	case under("/v1/limits"):
		return auth.Admin
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
// needs deploy alone but changing its code needs exec: another model,
// engine, split, shadow, python class or interpreter (modelsChanged), or
// another command.
func codeChanged(cur, next serving.Spec) bool {
	return modelsChanged(cur, next) || !slices.Equal(cur.Command, next.Command)
}

// shadowModel is the model s mirrors requests to, if any: a new one runs
// code of its own, as a new spec.model would.
func shadowModel(s serving.Spec) string {
	if s.Shadow == nil {
		return ""
	}
	return s.Shadow.Model
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

// checkExec refuses, with 403 auth/forbidden, a write whose spec runs code
// (RunsCode with engine) unless the request's principal may auth.Exec. A
// request that passed no auth stage (auth off, tests) is allowed.
func checkExec(ctx context.Context, s serving.Spec, engine string) error {
	if !RunsCode(s, engine) {
		return nil
	}
	return needExec(ctx, "")
}

// checkSpecExec is checkExec for a write that turns cur into next; cur is
// zero for a create. Beside a change of code (codeChanged), setting or
// changing a variable of spec.env that decides what code a process loads
// (codeEnv) or spec.template.image needs exec, whatever the engine.
func checkSpecExec(ctx context.Context, cur, next serving.Spec) error {
	if name, ok := codeEnvChanged(cur.Env, next.Env); ok {
		if err := needExec(ctx, fmt.Sprintf("spec.env sets %s, which decides what code a replica loads or runs", quoteClipped(name))); err != nil {
			return err
		}
	}
	if next.Template.Image != "" && next.Template.Image != cur.Template.Image {
		if err := needExec(ctx, fmt.Sprintf("spec.template.image %s is the code a replica pod runs", quoteClipped(next.Template.Image))); err != nil {
			return err
		}
	}
	if !codeChanged(cur, next) {
		return nil
	}
	return checkExec(ctx, next, next.Engine)
}

// needExec refuses, with 403 auth/forbidden, a request whose principal may
// not auth.Exec; why, when given, leads the message and says what needed
// it. A request that passed no auth stage (auth off, tests) is allowed.
func needExec(ctx context.Context, why string) error {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil
	}
	err := auth.Check(p, auth.Exec, "")
	if e, ok := errors.AsType[*auth.Error](err); ok && why != "" {
		e.Message = why + ": " + e.Message
	}
	return err
}

// codeEnvNames and codeEnvPrefixes are the environment variables that
// decide what code a process loads or runs rather than how the code
// behaves; see codeEnv.
var (
	codeEnvNames = map[string]bool{
		// Which program a bare command name runs (an http command, and
		// every program a model's code starts), and the startup files and
		// functions of sh and bash.
		"PATH": true, "BASH_ENV": true, "ENV": true, "SHELLOPTS": true, "BASHOPTS": true, "PS4": true,
		// HOME holds Python's user site-packages, whose .pth files run at
		// start, and ~/.gitconfig; XDG_CONFIG_HOME holds git's config
		// (core.sshCommand and the like run programs).
		"HOME": true, "XDG_CONFIG_HOME": true,
		// Python's webbrowser module runs $BROWSER (PYTHONWARNINGS can
		// import it).
		"BROWSER": true,
		// glibc's iconv loads the modules $GCONV_PATH names.
		"GCONV_PATH": true,
		"PERLLIB":    true, "NODE_OPTIONS": true, "NODE_PATH": true, "TCLLIBPATH": true,
		"JAVA_TOOL_OPTIONS": true, "_JAVA_OPTIONS": true, "JDK_JAVA_OPTIONS": true, "CLASSPATH": true,
		"PHPRC": true, "PHP_INI_SCAN_DIR": true,
		// OpenSSL's config loads engines and providers, shared libraries.
		"OPENSSL_CONF": true, "OPENSSL_ENGINES": true, "OPENSSL_MODULES": true,
		// Which servers a replica trusts, or goes through, for what it
		// fetches: a model given by an s3:// URI is not checked against
		// a digest, and for engine python it holds the code. Go and curl
		// read the proxies in lower case too.
		"SSL_CERT_FILE": true, "SSL_CERT_DIR": true,
		"HTTP_PROXY": true, "HTTPS_PROXY": true, "ALL_PROXY": true,
		"http_proxy": true, "https_proxy": true, "all_proxy": true,
	}
	codeEnvPrefixes = []string{
		"LD_",        // the dynamic loader: LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT
		"DYLD_",      // macOS's loader
		"PYTHON",     // PYTHONPATH, PYTHONHOME, PYTHONSTARTUP, PYTHONWARNINGS, PYTHONBREAKPOINT, ...
		"PERL5",      // PERL5LIB, PERL5OPT (-M modules), PERL5DB
		"RUBY",       // RUBYOPT, RUBYLIB
		"LUA_",       // LUA_PATH, LUA_CPATH, LUA_INIT
		"GIT_",       // GIT_SSH_COMMAND, GIT_EXEC_PATH, GIT_CONFIG_*
		"BASH_FUNC_", // functions bash imports from the environment
		// ebb's own settings of the replica: EBB_ONNXRUNTIME_LIB names
		// the library the onnx engine loads, others where it keeps the
		// artifacts it runs. They are the server's to set.
		"EBB_",
	}
)

// codeEnv reports whether a replica's environment variable name decides
// what code its process, or a process it starts, loads or runs: the
// dynamic loader's (LD_PRELOAD), the search paths and startup hooks of the
// interpreters a model or command may run (PYTHON*, NODE_OPTIONS, PERL5*,
// RUBY*, JAVA_TOOL_OPTIONS, ...), PATH and the shells' startup files, and
// the configuration files that name libraries or programs to run
// (OPENSSL_CONF, HOME for Python's user site-packages and git's config),
// and the trust anchors and proxies of what a replica fetches.
// Setting one is running code, so it needs the exec scope. Names are
// compared exactly, case and all, as the kernel and the loaders read them:
// ld_preload is an inert variable.
//
// Left out on purpose, since they tune code without choosing it:
// MALLOC_* and GLIBC_TUNABLES (allocator settings), OMP_*, MKL_* and
// GOMAXPROCS (thread counts), NO_PROXY (it only sends more requests
// direct), and locale and time zone settings. Credentials (AWS_*) are
// not code either: the bucket a model comes from is spec.model's, and
// the endpoint EBB_S3_ENDPOINT's.
func codeEnv(name string) bool {
	if codeEnvNames[name] {
		return true
	}
	for _, p := range codeEnvPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// codeEnvChanged returns the first (in order) variable of next that codeEnv
// flags and that cur does not set to the same value. Removing one needs no
// exec: the replica then inherits the server's own.
func codeEnvChanged(cur, next map[string]string) (string, bool) {
	var names []string
	for k, v := range next {
		if codeEnv(k) {
			if old, ok := cur[k]; !ok || old != v {
				names = append(names, k)
			}
		}
	}
	if len(names) == 0 {
		return "", false
	}
	return slices.Min(names), true
}
