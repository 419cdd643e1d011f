"""ebb's Python engine shim: serves one user model class over the Open
Inference Protocol v2 (REST). ebb ships this file and runs it as the replica
process (`ebb replica --engine python` execs the interpreter on it, so the
process keeps its PID and inherited descriptors). Standard library only;
numpy is used when it can be imported.

The user's class (--python-class "FILE.py:ClassName", FILE relative to the
model's directory or absolute, or "module:ClassName" importable from the
model's directory or sys.path):

    class Model:
        thread_safe = False          # optional; True lets requests call
                                     # predict concurrently
        def load(self, path): ...    # optional; called once with the absolute
                                     # model path (spec.model)
        def metadata(self): ...      # optional; {"platform": str,
                                     # "inputs": [{"name","datatype","shape"}],
                                     # "outputs": [...]}; -1 is a dynamic dim
        def predict(self, inputs): ...

predict receives a dict: input name -> numpy array with the request's shape
and the datatype's dtype (BYTES -> dtype object holding str), or, when numpy
is not importable, nested Python lists. It returns a dict: output name ->
array-like (numpy arrays, torch tensors, nested lists, scalars), or a single
array-like, served as the output "predict". JSON null in float inputs
becomes NaN; NaN and infinities in outputs are sent as null.

When metadata() declares inputs, requests are checked against it (names,
datatypes, shapes) and answered 400 when they do not match. Without it the
metadata reports what the first successful request carried. An exception from
predict is answered 500 with its type and message, or with its
`http_status` attribute when that is a 4xx. A failure to import the class or
to load the model is written to the notify descriptor, naming the file and
the exception, and the process exits 1.

On SIGTERM or SIGINT the server reports not ready, stops accepting
connections, lets in-flight requests finish (at most --drain-timeout
seconds) and exits 0.
"""

import argparse
import datetime
import importlib
import importlib.util
import json
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import numpy as np
except ImportError:
    np = None

MAX_REQUEST_BYTES = 64 << 20

# OIP v2 datatypes and their numpy dtypes.
DTYPES = {
    "BOOL": "bool",
    "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64",
    "BYTES": "object",
}
INT_RANGES = {
    "UINT8": (0, 2**8 - 1), "UINT16": (0, 2**16 - 1), "UINT32": (0, 2**32 - 1), "UINT64": (0, 2**64 - 1),
    "INT8": (-2**7, 2**7 - 1), "INT16": (-2**15, 2**15 - 1), "INT32": (-2**31, 2**31 - 1), "INT64": (-2**63, 2**63 - 1),
}


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def log(level, msg, **fields):
    rec = {"time": rfc3339(time.time()), "level": level, "msg": msg}
    rec.update(fields)
    try:
        sys.stderr.write(json.dumps(rec, default=str) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class LoadError(Exception):
    """The user's class could not be imported or loaded."""


class RequestError(Exception):
    """A problem with what the client sent, answered with status."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def q(v):
    """v as JSON, for messages: names quoted as Go's %q quotes them."""
    return json.dumps(v)


def bad(message):
    return RequestError(400, message)


def describe_exception(e):
    text = str(e)
    return type(e).__name__ + (": " + text if text else "")


def user_frame(tb, path):
    """The innermost frame of tb in the user's file path, as "FILE line N"."""
    where = None
    for fr in traceback.extract_tb(tb):
        if path and os.path.abspath(fr.filename) == path:
            where = "%s line %d" % (os.path.basename(path), fr.lineno)
    return where


# ---------------------------------------------------------------- loading


def import_class(spec, model_dir):
    """Imports the class spec names; returns (class, file it came from)."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise LoadError('python class %s: must be "FILE.py:ClassName" or "module:ClassName"' % q(spec))
    if target.endswith(".py") or "/" in target:
        path = target if os.path.isabs(target) else os.path.join(model_dir, target)
        path = os.path.abspath(path)
        if not os.path.isfile(path):
            raise LoadError("python class %s: file %s does not exist (a relative FILE is relative to the model's directory %s)"
                            % (spec, path, model_dir))
        sys.path.insert(0, os.path.dirname(path))
        modname = os.path.splitext(os.path.basename(path))[0]
        try:
            mspec = importlib.util.spec_from_file_location(modname, path)
            module = importlib.util.module_from_spec(mspec)
            # Registered under its own name so pickles of classes it defines
            # and sibling imports resolve.
            sys.modules[modname] = module
            mspec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(modname, None)
            where = user_frame(e.__traceback__, path)
            raise LoadError("python class %s: importing %s failed%s: %s"
                            % (spec, path, " at " + where if where else "", describe_exception(e))) from e
        origin = path
    else:
        sys.path.insert(0, model_dir)
        try:
            module = importlib.import_module(target)
        except Exception as e:
            raise LoadError("python class %s: importing module %s failed: %s" % (spec, target, describe_exception(e))) from e
        origin = getattr(module, "__file__", None) or target
    cls = getattr(module, name, None)
    if cls is None:
        found = sorted(k for k, v in vars(module).items() if isinstance(v, type) and not k.startswith("_"))
        raise LoadError("python class %s: %s defines no %s (it defines classes: %s)"
                        % (spec, origin, name, ", ".join(found) or "none"))
    if not callable(getattr(cls, "predict", None)):
        raise LoadError("python class %s: %s.%s has no predict(inputs) method" % (spec, origin, name))
    return cls, origin


def call_user(spec, origin, what, fn, *args):
    try:
        return fn(*args)
    except Exception as e:
        where = user_frame(e.__traceback__, os.path.abspath(origin) if os.path.isfile(origin) else "")
        raise LoadError("python class %s (%s): %s raised %s%s"
                        % (spec, origin, what, describe_exception(e), " at " + where if where else "")) from e


def check_tensor_meta(spec, kind, t):
    if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
        raise LoadError("python class %s: metadata() %s must be objects with a name, datatype and shape, not %s" % (spec, kind, q(t)))
    dt = t.get("datatype")
    if dt not in DTYPES:
        raise LoadError("python class %s: metadata() %s %s has datatype %s: use one of %s"
                        % (spec, kind, q(t["name"]), q(dt), ", ".join(DTYPES)))
    shape = t.get("shape")
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape):
        raise LoadError("python class %s: metadata() %s %s has shape %s: give a list of sizes, -1 for a dynamic one"
                        % (spec, kind, q(t["name"]), q(shape)))
    return {"name": t["name"], "datatype": dt, "shape": list(shape)}


class App:
    """The loaded model and the serving state shared by request threads."""

    def __init__(self, args):
        self.name = args.deployment
        self.replica_id = args.id
        self.pid = os.getpid()
        self.model_path = os.path.abspath(args.model) if args.model else ""
        model_dir = self.model_path if os.path.isdir(self.model_path) else os.path.dirname(self.model_path) or os.getcwd()
        spec = args.python_class
        cls, origin = import_class(spec, model_dir)
        obj = call_user(spec, origin, "%s()" % cls.__name__, cls)
        if callable(getattr(obj, "load", None)):
            call_user(spec, origin, "load(%s)" % q(self.model_path), obj.load, self.model_path)
        self.obj = obj
        self.model_loaded_at = time.time()
        self.ready_at = None
        self.lock = None if getattr(obj, "thread_safe", False) else threading.Lock()

        self.declared_inputs = self.declared_outputs = None
        meta = {"name": self.name, "platform": "python", "inputs": [], "outputs": []}
        m = getattr(obj, "metadata", None)
        if m is not None:
            m = call_user(spec, origin, "metadata()", m) if callable(m) else m
            if not isinstance(m, dict):
                raise LoadError("python class %s: metadata() must return a dict with inputs and outputs, not %s" % (spec, type(m).__name__))
            if "platform" in m:
                meta["platform"] = str(m["platform"])
            if m.get("versions"):
                meta["versions"] = [str(v) for v in m["versions"]]
            if "inputs" in m:
                self.declared_inputs = [check_tensor_meta(spec, "inputs", t) for t in m["inputs"]]
                meta["inputs"] = self.declared_inputs
            if "outputs" in m:
                self.declared_outputs = [check_tensor_meta(spec, "outputs", t) for t in m["outputs"]]
                meta["outputs"] = self.declared_outputs
        self.meta = meta
        self.meta_lock = threading.Lock()
        self.learned = False

        self.draining = False
        self.inflight = 0
        self.idle = threading.Condition()

    def metadata(self):
        with self.meta_lock:
            return dict(self.meta)

    def learn(self, inputs, outputs):
        """Records the signature of the first successful request for models
        that declare none."""
        if self.learned:
            return
        with self.meta_lock:
            if self.learned:
                return
            self.learned = True
            dyn = lambda s: [-1] + list(s[1:]) if s else []
            if self.declared_inputs is None:
                self.meta["inputs"] = [{"name": n, "datatype": dt, "shape": dyn(shape)} for n, (dt, shape) in inputs]
            if self.declared_outputs is None:
                self.meta["outputs"] = [{"name": o["name"], "datatype": o["datatype"], "shape": dyn(o["shape"])} for o in outputs]

    def begin(self):
        with self.idle:
            self.inflight += 1

    def end(self):
        with self.idle:
            self.inflight -= 1
            if self.inflight == 0:
                self.idle.notify_all()

    def wait_idle(self, timeout):
        deadline = time.monotonic() + timeout
        with self.idle:
            while self.inflight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.idle.wait(left)
        return True

    def info(self):
        return {
            "id": self.replica_id,
            "deployment": self.name,
            "pid": self.pid,
            "modelLoadedAt": rfc3339(self.model_loaded_at),
            "readyAt": rfc3339(self.ready_at) if self.ready_at else None,
        }

    # ------------------------------------------------------------ inference

    def infer(self, body, version):
        try:
            req = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise bad("request body is not valid JSON: %s" % e)
        if not isinstance(req, dict):
            raise bad('request body must be a JSON object with an "inputs" array, not a JSON %s' % json_kind(req))
        raw_inputs = req.get("inputs")
        if not isinstance(raw_inputs, list) or not raw_inputs:
            raise bad('request has no inputs: send {"inputs":[{"name":"...","shape":[1,N],"datatype":"FP32","data":[...]}]}')
        wanted = req.get("outputs")
        if wanted is not None:
            if not isinstance(wanted, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in wanted):
                raise bad('request field "outputs" must be an array of objects with a name')
            wanted = [o["name"] for o in wanted]
            if self.declared_outputs is not None:
                have = [o["name"] for o in self.declared_outputs]
                for n in wanted:
                    if n not in have:
                        raise bad("unknown output %s: model %s returns %s" % (q(n), q(self.name), ", ".join(have) or "no outputs"))
        inputs, sig = {}, []
        for raw in raw_inputs:
            name, dt, shape, value = decode_input(raw)
            if name in inputs:
                raise bad("input %s is given twice" % q(name))
            inputs[name] = value
            sig.append((name, (dt, shape)))
        if self.declared_inputs is not None:
            self.check_inputs(dict(sig))

        if self.lock is not None:
            with self.lock:
                result = self.obj.predict(inputs)
        else:
            result = self.obj.predict(inputs)

        if isinstance(result, dict):
            items = list(result.items())
        else:
            items = [("predict", result)]
        outputs = []
        for name, value in items:
            try:
                outputs.append(encode_output(str(name), value))
            except (TypeError, ValueError) as e:
                raise RuntimeError("output %s cannot be sent as an OIP v2 tensor: %s" % (q(name), e))
        if self.declared_outputs is None or self.declared_inputs is None:
            self.learn(sig, outputs)
        if wanted is not None:
            by_name = {o["name"]: o for o in outputs}
            missing = [n for n in wanted if n not in by_name]
            if missing:
                raise bad("unknown output %s: model %s returned %s" % (q(missing[0]), q(self.name), ", ".join(by_name) or "no outputs"))
            outputs = [by_name[n] for n in wanted]
        resp = {"model_name": self.name, "outputs": outputs}
        if version:
            resp["model_version"] = version
        if isinstance(req.get("id"), str) and req["id"]:
            resp["id"] = req["id"]
        return resp

    def check_inputs(self, given):
        declared = {t["name"]: t for t in self.declared_inputs}
        for name, (dt, shape) in given.items():
            t = declared.get(name)
            if t is None:
                raise bad("unknown input %s: model %s takes %s" % (q(name), q(self.name), describe_tensors(self.declared_inputs)))
            ok = dt == t["datatype"] and len(shape) == len(t["shape"]) and all(w == -1 or w == g for w, g in zip(t["shape"], shape))
            if not ok:
                raise bad("input %s: expected %s of shape %s, got %s of shape %s" % (q(name), t["datatype"], t["shape"], dt, shape))
        for t in self.declared_inputs:
            if t["name"] not in given:
                raise bad("missing input %s: model %s takes %s" % (q(t["name"]), q(self.name), describe_tensors(self.declared_inputs)))


def describe_tensors(ts):
    return ", ".join("%s (%s %s)" % (t["name"], t["datatype"], t["shape"]) for t in ts) or "no inputs"


def json_kind(v):
    if isinstance(v, list):
        return "array"
    if isinstance(v, str):
        return "string"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    return "number"


def flatten(data, out, depth=0):
    if depth > 32:
        raise ValueError("data is nested too deeply")
    if isinstance(data, list):
        for v in data:
            flatten(v, out, depth + 1)
    else:
        out.append(data)


def decode_input(raw):
    """Checks one request input and returns (name, datatype, shape, value)."""
    if not isinstance(raw, dict):
        raise bad("each input must be an object with name, shape, datatype and data, not a JSON %s" % json_kind(raw))
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise bad("an input has no name: give each input a name, shape, datatype and data")
    shape = raw.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise bad("input %s: shape must be an array of non-negative integers, not %s" % (q(name), json.dumps(shape)))
    dt = raw.get("datatype")
    if dt not in DTYPES:
        raise bad("input %s: unsupported datatype %s: use one of %s" % (q(name), json.dumps(dt), ", ".join(DTYPES)))
    if "data" not in raw:
        raise bad("input %s: data is missing" % q(name))
    flat = []
    try:
        flatten(raw["data"], flat)
    except ValueError as e:
        raise bad("input %s: %s" % (q(name), e))
    want = 1
    for d in shape:
        want *= d
    if len(flat) != want:
        raise bad("input %s: shape %s holds %d elements but data has %d" % (q(name), shape, want, len(flat)))
    flat = check_elements(name, dt, flat)
    if np is not None:
        value = np.array(flat, dtype=DTYPES[dt]).reshape(shape)
    else:
        value = reshape(flat, shape)
    return name, dt, shape, value


def check_elements(name, dt, flat):
    """Checks every element against the datatype; returns the elements with
    null floats as NaN."""

    def fail(v):
        raise bad("input %s: data does not match datatype %s: %s is not %s"
                  % (q(name), dt, json.dumps(v)[:40], {"BOOL": "a boolean", "BYTES": "a string"}.get(dt, "a number")))

    if dt == "BOOL":
        for v in flat:
            if not isinstance(v, bool):
                fail(v)
    elif dt == "BYTES":
        for v in flat:
            if not isinstance(v, str):
                fail(v)
    elif dt.startswith("FP"):
        out = []
        for v in flat:
            if v is None:
                v = math.nan
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                fail(v)
            out.append(float(v))
        return out
    else:
        lo, hi = INT_RANGES[dt]
        for v in flat:
            if isinstance(v, bool) or not isinstance(v, int):
                if isinstance(v, float) and v.is_integer():
                    raise bad("input %s: data does not match datatype %s: %s is not an integer" % (q(name), dt, v))
                fail(v)
            if not lo <= v <= hi:
                raise bad("input %s: %d is out of range for %s" % (q(name), v, dt))
    return flat


def reshape(flat, shape):
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0] if shape[0] else 0
    return [reshape(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def finite(values):
    return [v if v is None or math.isfinite(v) else None for v in values]


def encode_output(name, value):
    """Returns value as an OIP v2 response tensor."""
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()  # a torch tensor
    if np is not None:
        a = np.asarray(value)
        kind = a.dtype.kind
        if kind == "O":
            flat = a.ravel().tolist()
            if all(isinstance(v, (str, bytes)) for v in flat):
                kind = "U"
            else:
                a = a.astype(np.float64)
                kind = "f"
        shape = list(a.shape)
        if kind == "b":
            return tensor(name, "BOOL", shape, a.ravel().tolist())
        if kind in "iu":
            return tensor(name, ("INT%d" if kind == "i" else "UINT%d") % (a.dtype.itemsize * 8), shape, a.ravel().tolist())
        if kind == "f":
            dt = {2: "FP16", 4: "FP32"}.get(a.dtype.itemsize, "FP64")
            if dt == "FP64" and a.dtype.itemsize != 8:
                a = a.astype(np.float64)
            return tensor(name, dt, shape, finite(a.ravel().tolist()))
        if kind in "USO":
            flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in a.ravel().tolist()]
            return tensor(name, "BYTES", shape, flat)
        raise TypeError("numpy dtype %s has no OIP v2 datatype" % a.dtype)
    shape, flat = [], []
    v = value
    while isinstance(v, (list, tuple)):
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    flatten(list_of(value), flat)
    count = 1
    for d in shape:
        count *= d
    if count != len(flat):
        raise ValueError("nested lists are ragged: every row must have the same length")
    if all(isinstance(x, bool) for x in flat):
        return tensor(name, "BOOL", shape, flat)
    if all(isinstance(x, int) and not isinstance(x, bool) for x in flat):
        return tensor(name, "INT64", shape, flat)
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in flat):
        return tensor(name, "FP64", shape, finite([float(x) for x in flat]))
    if all(isinstance(x, str) for x in flat):
        return tensor(name, "BYTES", shape, flat)
    raise TypeError("values of type %s cannot be sent; return numbers, booleans or strings"
                    % ", ".join(sorted({type(x).__name__ for x in flat})))


def list_of(v):
    if isinstance(v, (list, tuple)):
        return [list_of(x) for x in v]
    return v


def tensor(name, dt, shape, data):
    return {"name": name, "datatype": dt, "shape": shape, "data": data}


# ---------------------------------------------------------------- serving


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ebb-python"
    sys_version = ""
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 300
    # Headers and body go out in separate writes; without TCP_NODELAY the
    # body waits for the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass  # no access log; errors are logged where they happen

    def do_GET(self):
        self.handle_one("GET")

    def do_HEAD(self):
        self.handle_one("HEAD")

    def do_POST(self):
        self.handle_one("POST")

    def do_PUT(self):
        self.handle_one("PUT")

    def do_DELETE(self):
        self.handle_one("DELETE")

    def do_PATCH(self):
        self.handle_one("PATCH")

    def handle_one(self, method):
        app = self.server.app
        app.begin()
        try:
            self.body_read = False
            status, body = self.answer(app, method)
            if not self.body_read and int(self.headers.get("Content-Length") or 0) > 0:
                self.close_connection = True  # the unread body would be taken for the next request
            if app.draining:
                self.close_connection = True
            self.reply(status, body, method == "HEAD")
        finally:
            # Only after the answer is written, so a drain waits for it.
            app.end()

    def answer(self, app, method):
        try:
            return self.route(app, method)
        except RequestError as e:
            return e.status, {"error": e.message}
        except Exception as e:
            status = getattr(e, "http_status", None)
            if isinstance(status, int) and 400 <= status < 500:
                return status, {"error": str(e)}
            log("ERROR", "infer failed", error=describe_exception(e), traceback=traceback.format_exc())
            return 500, {"error": "model %s: %s" % (app.name, describe_exception(e))}

    def reply(self, status, body, head_only):
        data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head_only:
            self.wfile.write(data)

    def allow(self, method, want):
        if method == want or (want == "GET" and method == "HEAD"):
            return True
        raise RequestError(405, "method %s not allowed on %s: use %s" % (method, self.path, want))

    def route(self, app, method):
        path = self.path.split("?", 1)[0]
        if path == "/v2/health/live":
            self.allow(method, "GET")
            return 200, {"live": True}
        if path == "/v2/health/ready":
            self.allow(method, "GET")
            return (503, {"ready": False}) if app.draining else (200, {"ready": True})
        if path in ("/v2", "/v2/"):
            self.allow(method, "GET")
            return 200, {"name": "ebb-python", "version": "1", "extensions": []}
        if path == "/ebb/v1/replica":
            self.allow(method, "GET")
            return 200, app.info()
        prefix = "/v2/models/"
        if not path.startswith(prefix):
            raise RequestError(404, "no endpoint %s %s: this OIP v2 server serves /v2/health/{live,ready}, /v2/models/%s[/versions/{v}][/ready|/infer]"
                               % (method, path, app.name))
        name, _, rest = path[len(prefix):].partition("/")
        version = ""
        if rest.startswith("versions/"):
            version, _, rest = rest[len("versions/"):].partition("/")
            if not version:
                raise RequestError(404, "no endpoint %s %s: the version is empty" % (method, path))
        if rest not in ("", "ready", "infer"):
            raise RequestError(404, "no endpoint %s %s: use /v2/models/%s[/versions/{v}][/ready|/infer]" % (method, path, app.name))
        if name != app.name:
            raise RequestError(404, "model %s not found: this replica serves %s" % (q(name), q(app.name)))
        versions = app.meta.get("versions")
        if version and versions and version not in versions:
            raise RequestError(404, "model %s has no version %s: it has versions %s" % (q(app.name), q(version), ", ".join(versions)))
        if rest == "":
            self.allow(method, "GET")
            return 200, app.metadata()
        if rest == "ready":
            self.allow(method, "GET")
            return (503 if app.draining else 200), {"name": app.name, "ready": not app.draining}
        self.allow(method, "POST")
        return 200, app.infer(self.read_body(), version)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RequestError(411, "chunked request bodies are not supported: send a Content-Length")
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise bad("Content-Length %s is not a number" % q(self.headers.get("Content-Length")))
        if n > MAX_REQUEST_BYTES:
            raise RequestError(413, "request body is larger than the limit of %d bytes: send fewer rows per request" % MAX_REQUEST_BYTES)
        if n <= 0:
            raise bad('request body is empty: send an OIP v2 infer request such as {"inputs":[{"name":"...","shape":[1,N],"datatype":"FP32","data":[...]}]}')
        body = self.rfile.read(n)
        self.body_read = True
        if len(body) != n:
            raise bad("request body ended after %d of %d bytes" % (len(body), n))
        return body


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock, app):
        # The socket is already bound and listening (inherited or made by
        # main), so skip binding.
        super().__init__(sock.getsockname()[:2], Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.app = app

    def handle_error(self, request, client_address):
        log("WARN", "connection error", client=str(client_address), error=traceback.format_exc(limit=3))


def open_socket(args):
    if args.listen_fd >= 0:
        try:
            sock = socket.socket(fileno=args.listen_fd)
        except OSError as e:
            raise LoadError("--listen-fd %d is not an inherited listening socket: %s" % (args.listen_fd, e))
        sock.setblocking(True)
        return sock
    host, _, port = args.addr.rpartition(":")
    try:
        return socket.create_server((host or "127.0.0.1", int(port)))
    except (OSError, ValueError) as e:
        raise LoadError("--addr %s: %s" % (args.addr, e))


def notify(fd, notice):
    if fd < 0:
        return
    try:
        os.write(fd, (json.dumps(notice) + "\n").encode())
    except OSError as e:
        log("WARN", "could not write the notice on --notify-fd", error=str(e))
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


def main(argv):
    p = argparse.ArgumentParser(prog="ebb-python-shim", description="Serve a Python model class over OIP v2 (run by ebb replica --engine python).")
    p.add_argument("--deployment", required=True)
    p.add_argument("--id", default="")
    p.add_argument("--model", default="")
    p.add_argument("--python-class", required=True)
    p.add_argument("--listen-fd", type=int, default=-1)
    p.add_argument("--addr", default="")
    p.add_argument("--notify-fd", type=int, default=-1)
    p.add_argument("--drain-timeout", type=float, default=30.0, help="seconds")
    args = p.parse_args(argv)
    # The user's model directory may be read-only; never write __pycache__.
    sys.dont_write_bytecode = True

    stop = threading.Event()

    def on_signal(signum, frame):
        # A second signal kills a replica whose drain hangs.
        signal.signal(signum, signal.SIG_DFL)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        if (args.listen_fd >= 0) == bool(args.addr):
            raise LoadError("give one of --listen-fd and --addr")
        sock = open_socket(args)
        app = App(args)
    except LoadError as e:
        cause = e.__cause__
        if cause is not None:
            log("ERROR", "python model failed to load", error=str(e),
                traceback="".join(traceback.format_exception(type(cause), cause, cause.__traceback__)))
        else:
            log("ERROR", "python model failed to load", error=str(e))
        notify(args.notify_fd, {"error": str(e)})
        return 1

    server = Server(sock, app)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="serve", daemon=True)
    app.ready_at = time.time()
    serving.start()
    log("INFO", "serving", addr="%s:%d" % sock.getsockname()[:2], model=app.model_path, python=sys.version.split()[0],
        numpy=np.__version__ if np is not None else None)
    notify(args.notify_fd, {"modelLoadedAt": rfc3339(app.model_loaded_at), "readyAt": rfc3339(app.ready_at)})

    while not stop.wait(3600):
        pass
    app.draining = True
    log("INFO", "draining", timeout=args.drain_timeout)
    server.shutdown()  # stops accepting; returns once serve_forever has
    sock.close()
    if not app.wait_idle(args.drain_timeout):
        log("ERROR", "drain: in-flight requests did not finish in time; exiting anyway", timeout=args.drain_timeout)
        return 1
    log("INFO", "drained")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
