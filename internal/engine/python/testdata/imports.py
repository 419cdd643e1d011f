"""A test model for the worker's memory of missing modules (MissingModules in
worker.py) and its frozen garbage collector: predict imports modules that do
not exist, then creates them, and answers one line per step in "steps"."""

import gc
import importlib
import importlib.util
import os
import sys


def attempt(name):
    try:
        return "%s: found %s" % (name, importlib.import_module(name).VALUE)
    except ModuleNotFoundError as e:
        return "%s: %s" % (name, e)


def create(directory, name):
    with open(os.path.join(directory, name + ".py"), "w") as f:
        f.write("VALUE = %r\n" % name.upper())


class Model:
    def load(self, path):
        # $IMPORTS_DIR/a is on sys.path from the start, to install a module
        # into; $IMPORTS_DIR/b is added later.
        self.dir = os.environ["IMPORTS_DIR"]
        for d in ("a", "b"):
            os.mkdir(os.path.join(self.dir, d))
        sys.path.append(os.path.join(self.dir, "a"))

    def predict(self, inputs):
        steps = []
        steps.append("frozen: %s" % (gc.get_freeze_count() > 0))
        steps.append(attempt("ebb_missing_a"))
        steps.append("find_spec: %s" % importlib.util.find_spec("ebb_missing_a"))
        # Created after it was found missing: still missing until the
        # caches are invalidated, as Python's documentation says may be.
        create(os.path.join(self.dir, "a"), "ebb_missing_a")
        steps.append(attempt("ebb_missing_a"))
        importlib.invalidate_caches()
        steps.append(attempt("ebb_missing_a"))
        # A new directory on sys.path is searched at once.
        steps.append(attempt("ebb_missing_b"))
        create(os.path.join(self.dir, "b"), "ebb_missing_b")
        sys.path.append(os.path.join(self.dir, "b"))
        steps.append(attempt("ebb_missing_b"))
        return {"steps": steps}
