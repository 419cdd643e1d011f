"""ebb's Python worker: runs one user model class for ebb's replica server.

ebb's Go replica server owns the protocol (REST, gRPC, validation, batching,
metadata). It starts one or more of these workers (`ebb replica --engine
python --python-workers N`) and hands each one decoded tensors over a Unix
socket it inherits (--fd), in the small binary framing below: no JSON and no
HTTP on the request path. Standard library only; with numpy, inputs arrive as
numpy arrays made with numpy.frombuffer over the received bytes (no copy).
This file is the script's first part; worker_tensors.py (tensor encoding) and
worker_pool.py (pools) follow it in the one file a worker runs (script.go).

The user's class (--python-class "FILE.py:ClassName", FILE relative to the
model's directory or absolute, or "module:ClassName" importable from the
model's directory or sys.path):

    class Model:
        def load(self, path): ...    # optional; called once with the absolute
                                     # model path (spec.model)
        def metadata(self): ...      # optional; {"platform": str,
                                     # "inputs": [{"name","datatype","shape"}],
                                     # "outputs": [...]}; -1 is a dynamic dim
        def predict(self, inputs): ...

predict receives a dict: input name -> numpy array with the request's shape
and the datatype's dtype (BYTES -> dtype object holding str), or, when numpy
is not importable, nested Python lists. With batching on, the arrays hold the
rows of several requests. It returns a dict: output name -> array-like (numpy
arrays, torch tensors, nested lists, scalars), or one array-like, served as
the output "predict". An output declared in metadata() is cast to the
declared datatype. A worker runs one predict at a time; a replica's workers
(spec.python.workers) run in parallel. (A class's thread_safe attribute,
which the earlier HTTP shim read, is not used: run more workers instead.)

Pools (--pool, `ebb replica --pool --engine python`): the worker starts with
no class and hosts many models, each loaded by LOAD with its name, class and
path as an instance of its own, and dropped by UNLOAD. A class opts in with
the class attribute `ebb_multi_model = True`, which says that instances of it
keep no state outside themselves (module globals, class attributes they
change), so that models of it can share a process; a class without it is
refused at LOAD with a message that says so. An optional unload() method is
called when its model is unloaded (to free what Python's collector does not:
a GPU's memory). Each LOAD and UNLOAD answers with the change of the worker's
resident memory it made (rssBytes), measured after a full collection and
malloc_trim: the model's memory, which the replica counts against its
budget. A class file is imported once per path and shared by the models that
name it; two files of the same name in different directories would replace
each other in sys.modules, so give them distinct names.

    class Model:
        ebb_multi_model = True
        def load(self, path): ...
        def predict(self, inputs): ...

An exception from predict is answered with its type and message: status 500,
or its `http_status` attribute when that is a 4xx (the server answers 400).
An exception that ends the process (os._exit, a crash in a C extension) fails
the requests in this worker only; ebb restarts it (a pool's replica stops
instead, and its models load again in the replica started in its place, so
that the pool can blame the model that crashed it). Failing to import the class
or to load the model is reported before READY (LOADERR), naming the file and
the exception, and the process exits 1.

The worker ignores SIGINT and SIGTERM: the replica drains first, then closes
the socket, and the worker exits when it reads the end of the stream.

Costs per request the worker keeps down: top-level modules found missing are
remembered (MissingModules: scikit-learn tries `import pandas` several times
per predict, and each try searched all of sys.path again; after installing a
module into a running worker, call importlib.invalidate_caches(), as Python
asks for modules created after start); gc.freeze() after load keeps the model
out of full collections; and one read takes all the frames waiting, each
copied into a buffer of its own, so an input array stays valid for as long as
predict keeps it.

Framing (integers little-endian; offsets within a frame's body; data 8-byte
aligned). internal/engine/python/frame.go is the other half: keep them in step.

    frame   := u32 body_length, body
    body    := u8 kind, 3 zero bytes, u64 request_id, payload
    INFER (1, ebb -> worker) and RESULT (2, worker -> ebb):
        payload := u32 count, count x tensor
        tensor  := u16 name_length, u8 datatype_length, u8 rank, u32 zero,
                   u64 data_length, rank x i64 dimension, name, datatype,
                   zero bytes to a multiple of 8, data, zero bytes to a
                   multiple of 8
        data    := the elements in row-major order; BYTES: each element as
                   a u32 length and its bytes
    ERROR (3, worker -> ebb): payload := u16 status, u16 zero, u32 length, message
    READY (4, worker -> ebb, id 0): payload := u32 length, JSON: the metadata
        (platform, versions, inputs, outputs; null when not declared) and the
        python and numpy versions
    LOADERR (5, worker -> ebb, id 0): payload := u32 length, message
    With --pool, READY declares nothing, INFER is not used, and:
    LOAD (6, ebb -> worker): payload := u32 model, u32 length, JSON: name,
        class, path; answered by LOADED, or ERROR (400: the class or its load
        failed; nothing stays loaded)
    LOADED (7, worker -> ebb): payload := u32 length, JSON: the model's
        metadata as READY's, and rssBytes, the change of the worker's resident
        memory; it answers UNLOAD too (rssBytes only)
    UNLOAD (8, ebb -> worker): payload := u32 model, u32 zero
    INFER_TO (9, ebb -> worker): payload := u32 model, u32 zero, then INFER's
"""

import argparse
import datetime
import gc
import importlib
import importlib.machinery
import importlib.util
import json
import os
import signal
import socket
import struct
import sys
import time
import traceback

try:
    import numpy as np
except ImportError:
    np = None

INFER, RESULT, ERROR, READY, LOADERR, LOAD, LOADED, UNLOAD, INFER_TO = 1, 2, 3, 4, 5, 6, 7, 8, 9

LENGTH = struct.Struct("<I")
BODY = struct.Struct("<B3xQ")
COUNT = struct.Struct("<I")
TENSOR = struct.Struct("<HBBIQ")
ERRHEAD = struct.Struct("<HHI")
ELEMENT = struct.Struct("<I")
MODEL = struct.Struct("<II")  # a pool's model number, and a length or zero

# OIP v2 datatypes: (numpy dtype, struct code, bytes per element). BF16 has
# no numpy or struct type: it travels as uint16 and is widened to float32.
TYPES = {
    "BOOL": ("?", "?", 1),
    "INT8": ("<i1", "b", 1), "INT16": ("<i2", "h", 2), "INT32": ("<i4", "i", 4), "INT64": ("<i8", "q", 8),
    "UINT8": ("<u1", "B", 1), "UINT16": ("<u2", "H", 2), "UINT32": ("<u4", "I", 4), "UINT64": ("<u8", "Q", 8),
    "FP16": ("<f2", "e", 2), "FP32": ("<f4", "f", 4), "FP64": ("<f8", "d", 8),
    "BF16": ("<u2", "H", 2),
    "BYTES": (None, None, 0),
}
# A datatype the replica does not carry is sent as the next wider one it does.
WIDER = {"INT8": "INT16", "INT16": "INT32", "INT32": "INT64", "UINT8": "UINT16", "UINT16": "UINT32",
         "UINT32": "UINT64", "UINT64": "INT64", "FP16": "FP32", "BF16": "FP32", "FP32": "FP64"}
INT64_MAX = 2**63 - 1


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


class OutputError(Exception):
    """An output of predict cannot be sent as an OIP v2 tensor."""


def q(v):
    """v as JSON, for messages: names quoted as Go's %q quotes them."""
    return json.dumps(v)


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


class MissingModules(importlib.machinery.PathFinder):
    """PathFinder remembering the top-level names it did not find: asked
    again, it answers None at once instead of searching sys.path again. It
    forgets them when sys.path or sys.path_hooks change, and on
    importlib.invalidate_caches(). Other finders are still asked."""

    names, key = set(), None

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if path is not None:
            return super().find_spec(fullname, path, target)
        key = (tuple(sys.path), tuple(sys.path_hooks))
        if key != cls.key or len(cls.names) > 1000:
            cls.names, cls.key = set(), key
        elif fullname in cls.names:
            return None
        spec = super().find_spec(fullname, path, target)
        if spec is None:
            cls.names.add(fullname)
        return spec

    @classmethod
    def invalidate_caches(cls):
        cls.names = set()
        super().invalidate_caches()


# The modules imported from class files, by absolute path: models of a pool
# that name the same file share its module.
IMPORTED = {}


def add_path(d):
    if d not in sys.path:
        sys.path.insert(0, d)


def import_file(spec, path):
    """Imports the class file at path, a module of its own."""
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
    IMPORTED[path] = module
    return module


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
        add_path(os.path.dirname(path))
        module = IMPORTED.get(path) or import_file(spec, path)
        origin = path
    else:
        add_path(model_dir)
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


def check_tensor_meta(spec, kind, t, carried):
    if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
        raise LoadError("python class %s: metadata() %s must be objects with a name, datatype and shape, not %s" % (spec, kind, q(t)))
    dt = t.get("datatype")
    if dt not in carried:
        raise LoadError("python class %s: metadata() %s %s has datatype %s: use one of %s"
                        % (spec, kind, q(t["name"]), q(dt), ", ".join(carried)))
    shape = t.get("shape")
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape):
        raise LoadError("python class %s: metadata() %s %s has shape %s: give a list of sizes, -1 for a dynamic one"
                        % (spec, kind, q(t["name"]), q(shape)))
    return {"name": t["name"], "datatype": dt, "shape": list(shape)}


class Worker:
    """A loaded model, one instance of the user's class: decodes requests,
    calls predict, encodes answers. shared: one model of a pool's, whose
    class must say that it shares the process (ebb_multi_model)."""

    def __init__(self, spec, model, carried, shared=False):
        self.carried = carried
        self.model_path = os.path.abspath(model) if model else ""
        model_dir = self.model_path if os.path.isdir(self.model_path) else os.path.dirname(self.model_path) or os.getcwd()
        cls, origin = import_class(spec, model_dir)
        if shared and getattr(cls, "ebb_multi_model", False) is not True:
            raise LoadError("python class %s (%s): %s does not say that several models may share one process, which a pool "
                            "needs: its models are instances in the same worker processes. If instances of %s keep no state "
                            "outside themselves (module globals, class attributes they change), add the class attribute "
                            "ebb_multi_model = True to it; otherwise deploy the model on its own, without spec.pool"
                            % (spec, origin, cls.__name__, cls.__name__))
        obj = call_user(spec, origin, "%s()" % cls.__name__, cls)
        if callable(getattr(obj, "load", None)):
            call_user(spec, origin, "load(%s)" % q(self.model_path), obj.load, self.model_path)
        self.predict = obj.predict
        self.unload = getattr(obj, "unload", None) if shared else None

        meta = {"platform": "python", "versions": None, "inputs": None, "outputs": None}
        m = getattr(obj, "metadata", None)
        if m is not None:
            m = call_user(spec, origin, "metadata()", m) if callable(m) else m
            if not isinstance(m, dict):
                raise LoadError("python class %s: metadata() must return a dict with inputs and outputs, not %s" % (spec, type(m).__name__))
            if "platform" in m:
                meta["platform"] = str(m["platform"])
            if m.get("versions"):
                meta["versions"] = [str(v) for v in m["versions"]]
            for kind in ("inputs", "outputs"):
                if m.get(kind) is not None:
                    if not isinstance(m[kind], (list, tuple)):
                        raise LoadError("python class %s: metadata() %s must be a list, not %s" % (spec, kind, type(m[kind]).__name__))
                    meta[kind] = [check_tensor_meta(spec, kind, t, self.carried) for t in m[kind]]
        self.meta = meta
        self.input_types = {t["name"]: t["datatype"] for t in meta["inputs"] or ()}
        self.output_types = {t["name"]: t["datatype"] for t in meta["outputs"] or ()}

    def infer(self, body, off=BODY.size):
        """Answers one INFER body, its tensors from off: returns the RESULT
        payload's buffers."""
        inputs = {}
        for name, dt, shape, value in decode_tensors(body, off):
            want = self.input_types.get(name)
            if want is not None and want != dt:
                value = convert(value, want)
            inputs[name] = value
        result = self.predict(inputs)
        items = result.items() if isinstance(result, dict) else [("predict", result)]
        bufs = [None]
        n = 0
        for name, value in items:
            name = str(name)
            try:
                dt, shape, data = encode_output(value, self.output_types.get(name), self.carried)
            except (TypeError, ValueError, OverflowError) as e:
                raise OutputError("output %s cannot be sent as an OIP v2 tensor: %s" % (q(name), e)) from e
            bufs.extend(tensor_buffers(name, dt, shape, data))
            n += 1
        bufs[0] = COUNT.pack(n)
        return bufs


# ---------------------------------------------------------------- channel


class Channel:
    """The socket to the replica, one frame at a time."""

    def __init__(self, fd, buffer=64 << 10):
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(True)
        # Bytes read ahead of the frame being returned: buf[start:end].
        self.buf = bytearray(buffer)
        self.view = memoryview(self.buf)
        self.start = self.end = 0

    def read(self):
        """Returns the next frame's body (a bytearray of its own), or None at
        the end of the stream."""
        if self.end - self.start < LENGTH.size:
            if len(self.buf) - self.start < LENGTH.size:
                rest = bytes(self.view[self.start:self.end])
                self.buf[:len(rest)] = rest
                self.start, self.end = 0, len(rest)
            while self.end - self.start < LENGTH.size:
                k = self.sock.recv_into(self.view[self.end:])
                if k == 0:
                    return None
                self.end += k
        (n,) = LENGTH.unpack_from(self.buf, self.start)
        self.start += LENGTH.size
        body = bytearray(n)
        have = min(n, self.end - self.start)
        body[:have] = self.view[self.start:self.start + have]
        self.start += have
        if self.start == self.end:
            self.start = self.end = 0
        view = memoryview(body)
        while have < n:
            # The rest of a large frame is read straight into its buffer.
            k = self.sock.recv_into(view[have:])
            if k == 0:
                return None
            have += k
        return body

    def send(self, kind, rid, payload):
        """Sends one frame; payload is a list of buffers."""
        sizes = [memoryview(b).nbytes for b in payload]
        size = BODY.size + sum(sizes)
        bufs = [LENGTH.pack(size) + BODY.pack(kind, rid)] + [b for b, n in zip(payload, sizes) if n]
        sent = self.sock.sendmsg(bufs)
        if sent < LENGTH.size + size:
            # A partial write (a signal, a full socket buffer): send the rest.
            self.sock.sendall(b"".join(memoryview(b).tobytes() for b in bufs)[sent:])

    def send_text(self, kind, rid, text):
        b = text.encode("utf-8", "replace")
        self.send(kind, rid, [COUNT.pack(len(b)), b])

    def send_error(self, rid, status, message):
        b = message.encode("utf-8", "replace")
        self.send(ERROR, rid, [ERRHEAD.pack(status, 0, len(b)), b])


def serve(ch, worker, pool):
    """Answers the replica's frames until it closes the channel: INFER for
    worker, or a pool's LOAD, UNLOAD and INFER_TO."""
    while True:
        body = ch.read()
        if body is None:
            return
        kind, rid = BODY.unpack_from(body, 0)
        try:
            if kind == INFER and worker is not None:
                answer, payload = RESULT, worker.infer(body)
            elif kind == INFER_TO and pool is not None:
                answer, payload = RESULT, pool.infer(body)
            elif kind in (LOAD, UNLOAD) and pool is not None:
                text = json.dumps(pool.load(body) if kind == LOAD else pool.unload(body))
                ch.send_text(LOADED, rid, text)
                continue
            else:
                ch.send_error(rid, 500, "python worker: unexpected message kind %d" % kind)
                continue
        except LoadError as e:
            cause = e.__cause__
            tb = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)) if cause is not None else None
            log("ERROR", "python model failed to load", error=str(e), traceback=tb)
            ch.send_error(rid, 400, str(e))
            continue
        except Exception as e:
            status = getattr(e, "http_status", None)
            if not (isinstance(status, int) and 400 <= status < 500):
                status = 500
                log("ERROR", "predict failed", error=describe_exception(e), traceback=traceback.format_exc())
            ch.send_error(rid, status, str(e) if isinstance(e, OutputError) else describe_exception(e))
            continue
        ch.send(answer, rid, payload)


def main(argv):
    p = argparse.ArgumentParser(prog="ebb-python-worker", description="Run a Python model class for ebb's replica server (started by ebb replica --engine python).")
    p.add_argument("--fd", type=int, required=True, help="inherited Unix socket to the replica")
    p.add_argument("--model", default="")
    p.add_argument("--python-class", default="")
    p.add_argument("--pool", action="store_true", help="host many models, loaded by the replica (LOAD), instead of one class")
    p.add_argument("--worker", default="0", help="this worker's number, for logs")
    p.add_argument("--datatypes", default="BOOL,INT32,INT64,FP32,FP64,BYTES", help="datatypes the replica carries")
    args = p.parse_args(argv)
    # The user's model directory may be read-only; never write __pycache__.
    sys.dont_write_bytecode = True
    # A module found missing is not searched for again (MissingModules).
    sys.meta_path[:] = [MissingModules if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
    # The replica drains, then closes the socket: that ends this worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    ch = Channel(args.fd)
    carried = [d for d in args.datatypes.split(",") if d in TYPES]
    worker = pool = None
    try:
        if args.pool:
            pool = Pool(carried)
        elif not args.python_class:
            raise LoadError("python worker: give --python-class, or --pool")
        else:
            worker = Worker(args.python_class, args.model, carried)
    except LoadError as e:
        cause = e.__cause__
        tb = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)) if cause is not None else None
        log("ERROR", "python model failed to load", worker=args.worker, error=str(e), traceback=tb)
        ch.send_text(LOADERR, 0, str(e))
        return 1
    # What loading left behind is collected once; the rest (the model, the
    # modules) lives as long as the worker: full collections skip it.
    gc.collect()
    gc.freeze()
    meta = worker.meta if worker is not None else {"platform": "python", "versions": None, "inputs": None, "outputs": None}
    ready = dict(meta, python=sys.version.split()[0], numpy=np.__version__ if np is not None else None)
    ch.send_text(READY, 0, json.dumps(ready))
    try:
        serve(ch, worker, pool)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the replica is gone
    return 0
