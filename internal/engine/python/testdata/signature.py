"""A test model with declared metadata; returns a single array."""


class Model:
    def metadata(self):
        return {
            "platform": "test",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
            "outputs": [{"name": "predict", "datatype": "FP32", "shape": [-1]}],
        }

    def predict(self, inputs):
        return [sum(row) for row in inputs["x"].tolist()]
