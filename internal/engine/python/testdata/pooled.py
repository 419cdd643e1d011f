"""A test model for pools: several models of this class share a worker.

Its model file holds "scale=S mib=M": predict multiplies input "x" by S,
and the model holds M MiB of memory of its own while loaded. An x of -999
ends the worker (status 3). unload() writes the model file's name into
$UNLOADED_DIR, when set.
"""

import os


class Model:
    ebb_multi_model = True

    def load(self, path):
        fields = dict(kv.split("=") for kv in open(path).read().split())
        self.path = path
        self.scale = float(fields["scale"])
        # Written, so the pages are resident.
        self.ballast = bytearray(b"\x01") * (int(fields.get("mib", "0")) << 20)

    def metadata(self):
        return {
            "inputs": [{"name": "x", "datatype": "FP64", "shape": [-1]}],
            "outputs": [{"name": "y", "datatype": "FP64", "shape": [-1]},
                        {"name": "pid", "datatype": "INT64", "shape": [1]}],
        }

    def predict(self, inputs):
        x = list(inputs["x"])
        if -999 in x:
            os._exit(3)
        return {"y": [v * self.scale for v in x], "pid": [os.getpid()]}

    def unload(self):
        d = os.environ.get("UNLOADED_DIR")
        if d:
            with open(os.path.join(d, os.path.basename(self.path)), "w") as f:
                f.write("unloaded\n")


class Alone:
    """Does not opt in: a pool refuses it."""

    def predict(self, inputs):
        return {"y": [0.0]}


class FailsLoad:
    ebb_multi_model = True

    def load(self, path):
        raise RuntimeError("cannot read " + os.path.basename(path))

    def predict(self, inputs):
        return {"y": [0.0]}
