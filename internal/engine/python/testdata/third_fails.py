"""A test model whose load fails in worker 2 only (the worker's number is
its --worker argument): the other workers load it."""

import sys


class Model:
    def load(self, path):
        if sys.argv[sys.argv.index("--worker") + 1] == "2":
            raise RuntimeError("worker 2 cannot load")

    def predict(self, inputs):
        return inputs
