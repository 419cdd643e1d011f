"""A test model with a syntax error."""


class Model:
    def predict(self, inputs)
        return inputs
