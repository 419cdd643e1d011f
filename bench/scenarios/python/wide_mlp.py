"""A compute-bound Python model for the batching benchmark: a wide MLP
(64 -> 2048 -> 2048 -> 10, ReLU) in numpy, its weights drawn with a fixed
seed. One row costs three matrix-vector products that stream 17 MB of
weights; a batch of rows shares one pass over them."""
import numpy as np

LAYERS = (64, 2048, 2048, 10)


class Model:
    def load(self, path):
        rng = np.random.default_rng(0)
        self.weights = [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
                        for a, b in zip(LAYERS, LAYERS[1:])]

    def metadata(self):
        return {
            "platform": "numpy",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, LAYERS[0]]}],
            "outputs": [{"name": "predict", "datatype": "FP32", "shape": [-1, LAYERS[-1]]}],
        }

    def predict(self, inputs):
        h = inputs["x"]
        for i, w in enumerate(self.weights):
            h = h @ w
            if i < len(self.weights) - 1:
                np.maximum(h, 0, out=h)
        return {"predict": h}
