"""A compute-bound Python model for the batching benchmark: a wide MLP
(64 -> h -> h -> 10, ReLU) in numpy, its weights drawn with a fixed seed.
The model file is JSON, {"layers": [64, h, h, 10]}: the bench sizes h so
that the weights are at least twice the CPU's last-level cache. One row
costs three matrix-vector products that stream every weight from memory;
a batch of rows shares one pass over them."""
import json

import numpy as np

LAYERS = (64, 2048, 2048, 10)


class Model:
    def load(self, path):
        layers = LAYERS
        if path.endswith(".json"):
            with open(path) as f:
                layers = tuple(json.load(f)["layers"])
        self.layers = layers
        rng = np.random.default_rng(0)
        self.weights = [(rng.standard_normal((a, b), dtype=np.float32) / np.float32(np.sqrt(a)))
                        for a, b in zip(layers, layers[1:])]

    def metadata(self):
        return {
            "platform": "numpy",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, self.layers[0]]}],
            "outputs": [{"name": "predict", "datatype": "FP32", "shape": [-1, self.layers[-1]]}],
        }

    def predict(self, inputs):
        h = inputs["x"]
        for i, w in enumerate(self.weights):
            h = h @ w
            if i < len(self.weights) - 1:
                np.maximum(h, 0, out=h)
        return {"predict": h}
