# Part of ebb's Python worker, one script with worker.py: script.go joins
# worker.py, worker_tensors.py and worker_pool.py, in that order, into the
# file each worker runs, so the parts share their names (imports are
# worker.py's).

# ---------------------------------------------------------------- pools


PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident():
    """This process's resident memory in bytes; 0 where /proc cannot tell."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


class Pool:
    """The models of a pool's worker (--pool), by the number ebb gave each."""

    def __init__(self, carried):
        self.carried, self.models = carried, {}
        self.trim = None  # libc's malloc_trim, to hand freed memory back
        try:
            import ctypes
            self.trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (ImportError, OSError, AttributeError):
            pass

    def settle(self, everything=False):
        """Collects what no model holds and hands it back to the system;
        returns the resident memory then. The loaded models are frozen
        (gc.freeze), out of the collector's sight: a load's collection
        costs what the load left, and only an unload, whose model may hold
        reference cycles among the frozen, collects everything."""
        if everything:
            gc.unfreeze()
        gc.collect()
        gc.freeze()
        if self.trim is not None:
            self.trim(0)
        return resident()

    def load(self, body):
        """Answers LOAD: the model's metadata and the memory it took."""
        number, n = MODEL.unpack_from(body, BODY.size)
        start = BODY.size + MODEL.size
        req = json.loads(bytes(body[start:start + n]))
        if number in self.models:
            raise LoadError("python worker: model number %d is loaded already" % number)
        before = self.settle()
        worker = Worker(req.get("class") or "", req.get("path") or "", self.carried, shared=True)
        self.models[number] = worker
        log("INFO", "python model loaded", model=req.get("name"), path=worker.model_path)
        return dict(worker.meta, rssBytes=self.settle() - before)

    def unload(self, body):
        """Answers UNLOAD: the memory the model gave back (negative)."""
        number, _ = MODEL.unpack_from(body, BODY.size)
        worker = self.models.pop(number, None)
        before = resident()
        if worker is not None and callable(worker.unload):
            try:
                worker.unload()
            except Exception as e:
                log("WARN", "unload() of a python model raised", error=describe_exception(e), traceback=traceback.format_exc())
        del worker
        return {"rssBytes": self.settle(everything=True) - before}

    def infer(self, body):
        number, _ = MODEL.unpack_from(body, BODY.size)
        worker = self.models.get(number)
        if worker is None:
            raise LookupError("python worker: model number %d is not loaded" % number)
        return worker.infer(body, BODY.size + MODEL.size)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
