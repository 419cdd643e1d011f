"""A test model: echoes its inputs and says what type predict received."""


class Model:
    def load(self, path):
        self.path = path

    def predict(self, inputs):
        if "fail" in inputs:
            raise ValueError("the model cannot handle input fail")
        if "reject" in inputs:
            e = ValueError("input reject is not for this model")
            e.http_status = 422
            raise e
        out = {"kind": [type(v).__module__ for v in inputs.values()]}
        for name, value in inputs.items():
            out[name + "_out"] = value
        return out
