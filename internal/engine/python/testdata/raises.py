"""A test model whose load fails."""


class Model:
    def load(self, path):
        raise RuntimeError("cannot read weights from " + path)

    def predict(self, inputs):
        return inputs
